"""Malformed gRPC calls against a real `poise serve`: every one gets a deliberate status, none crashes it.

Requests go through a raw channel with identity serializers, so the server sees exactly the bytes
made here: random bytes, truncated and deeply nested messages, invalid UTF-8 in string fields,
extreme and huge field values, garbage chunk streams for UploadAnswer and bad metadata. Each call
must end in a status a client can act on; UNKNOWN, INTERNAL or UNAVAILABLE would mean an unhandled
error or a crash. Afterwards the server must still be healthy and serve a real call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc

from poise_common.auth import SCOPES
from poise_common.grpc_api.poise.v1 import scoring_pb2 as pb
from serve_process import serve

SERVICE = pb.DESCRIPTOR.services_by_name["ScoringService"]
# Statuses that are answers, not failures (CANCELLED: the test itself ends a subscription).
DELIBERATE = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.CANCELLED,
}
FIELD_STRINGS = ["", "x" * 200_000, "../../etc/passwd", "\x00\x01\x7f", "é" * 1000, "0" * 32, "f" * 32, "%s%n" * 50]
FIELD_NUMBERS = {
    "int": [0, -1, 2**31 - 1, -(2**31)],
    "int64": [2**63 - 1, -(2**63), 2**40],
    "float": [float("nan"), float("inf"), float("-inf"), 1e308, -0.0],
}
LENGTH_DELIMITED, VARINT, START_GROUP = 2, 0, 3


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def random_value(field: pb_descriptor.FieldDescriptor, rng: np.random.Generator, depth: int = 0):
    kind = field.type
    if kind == field.TYPE_STRING:
        return FIELD_STRINGS[rng.integers(len(FIELD_STRINGS))]
    if kind == field.TYPE_BYTES:
        return rng.integers(0, 256, int(rng.integers(0, 5000)), dtype=np.uint8).tobytes()
    if kind in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
        return FIELD_NUMBERS["float"][rng.integers(len(FIELD_NUMBERS["float"]))]
    if kind in (field.TYPE_INT64, field.TYPE_SINT64, field.TYPE_SFIXED64):
        return FIELD_NUMBERS["int64"][rng.integers(3)]
    if kind in (field.TYPE_UINT64, field.TYPE_FIXED64):
        return 2**64 - 1
    if kind == field.TYPE_BOOL:
        return bool(rng.integers(2))
    if kind == field.TYPE_MESSAGE:
        return random_message(field.message_type, rng, depth + 1)
    return FIELD_NUMBERS["int"][rng.integers(len(FIELD_NUMBERS["int"]))]


def random_message(descriptor: pb_descriptor.Descriptor, rng: np.random.Generator, depth: int = 0):
    """A valid message of ``descriptor`` with extreme values in random fields."""
    message = message_factory.GetMessageClass(descriptor)()
    for field in descriptor.fields:
        if depth > 2 or rng.random() < 0.3:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue
        if field.is_repeated:
            container = getattr(message, field.name)
            for _ in range(int(rng.choice([1, 3, 60]))):
                value = random_value(field, rng, depth)
                if field.type == field.TYPE_MESSAGE:
                    container.add().CopyFrom(value)
                else:
                    container.append(value)
        elif field.type == field.TYPE_MESSAGE:
            getattr(message, field.name).CopyFrom(random_value(field, rng, depth))
        else:
            setattr(message, field.name, random_value(field, rng, depth))
    return message


def malformed_payloads(method: pb_descriptor.MethodDescriptor, rng: np.random.Generator) -> Iterator[bytes]:
    """Request bytes for ``method`` that a careless server would trip over."""
    for size in (1, 2, 3, 7, 64, 500, 4096):
        yield rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    strings = [f for f in method.input_type.fields if f.type == f.TYPE_STRING]
    for field in strings:
        yield tag(field.number, LENGTH_DELIMITED) + varint(4) + b"\xff\xfe\xc3\x28"  # invalid UTF-8
        yield tag(field.number, LENGTH_DELIMITED) + varint(1000)  # a length past the end
        yield tag(field.number, VARINT) + varint(2**63)  # the wrong wire type
    yield tag(1, START_GROUP) * 200  # groups nested past any parser's depth limit
    yield b"\x80" * 11  # a varint that never ends
    for _ in range(6):
        message = random_message(method.input_type, rng).SerializeToString()
        yield message
        if len(message) > 2:
            yield message[: len(message) // 2]  # cut in the middle of a field
    yield b"\x0a" + varint(5 << 20) + bytes(5 << 20)  # past the server's message size limit


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("poise-home")
    with serve(home, grpc=True) as served:
        key = served.key("acme", ",".join(s for s in SCOPES if s != "admin"))
        reader = served.key("acme", "scores:read")
        channel = grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}")
        try:
            yield served, channel, key, reader, home
        finally:
            channel.close()


def outcome(channel: grpc.Channel, method: pb_descriptor.MethodDescriptor, requests, metadata) -> grpc.StatusCode:
    """Call ``method`` with raw ``requests``; the status it ended with (a subscription that
    started is ended here: CANCELLED)."""
    path = f"/{SERVICE.full_name}/{method.name}"
    try:
        if method.client_streaming:
            channel.stream_unary(path)(requests, metadata=metadata, timeout=60)
        elif method.server_streaming:
            call = channel.unary_stream(path)(requests, metadata=metadata, timeout=60)
            if ("poise-subscribed", "1") in (call.initial_metadata() or ()):
                call.cancel()
                return grpc.StatusCode.CANCELLED
            for _ in call:
                pass
        else:
            channel.unary_unary(path)(requests, metadata=metadata, timeout=60)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_malformed_calls_get_deliberate_statuses_and_the_server_stays_up(server):
    served, channel, key, reader, home = server
    auth = [("authorization", f"Bearer {key}")]
    rng = np.random.default_rng(7)
    stub_create = channel.unary_unary(f"/{SERVICE.full_name}/CreateInterview")
    interview_id = pb.CreateInterviewResponse.FromString(
        stub_create(pb.CreateInterviewRequest(questions=[pb.Question(question_id="q1", text="Why?")]).SerializeToString(),
                    metadata=auth, timeout=30)
    ).interview_id
    valid_first = pb.UploadAnswerRequest(interview_id=interview_id, question_id="q1").SerializeToString()

    calls: list[tuple[str, str, grpc.StatusCode]] = []
    for method in SERVICE.methods:
        payloads = list(malformed_payloads(method, rng))
        for index, payload in enumerate(payloads):
            requests = iter([payload]) if method.client_streaming else payload
            calls.append((method.name, f"payload {index}", outcome(channel, method, requests, auth)))

    garbage = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in (1, 100, 70_000, 200_000)]
    streams = {
        "no messages": [],
        "garbage first": [garbage[1], valid_first],
        "valid first, then malformed messages": [valid_first, b"\xff\xff\xff", garbage[1]],
        "valid first, then chunks of noise": [valid_first]
        + [pb.UploadAnswerRequest(data=g).SerializeToString() for g in garbage],
        "a chunk past the message size limit": [valid_first, b"\x1a" + varint(5 << 20) + bytes(5 << 20)],
        "a declared size past the file limit": [
            pb.UploadAnswerRequest(interview_id=interview_id, question_id="q1", total_bytes=2**62).SerializeToString()
        ],
        "an unknown question": [pb.UploadAnswerRequest(interview_id=interview_id, question_id="q9").SerializeToString()],
        "a huge interview id": [pb.UploadAnswerRequest(interview_id="a" * 100_000, question_id="q1").SerializeToString()],
    }
    upload = SERVICE.methods_by_name["UploadAnswer"]
    for name, messages in streams.items():
        calls.append(("UploadAnswer", name, outcome(channel, upload, iter(messages), auth)))

    get = SERVICE.methods_by_name["GetScorecard"]
    request = pb.GetScorecardRequest(interview_id=interview_id).SerializeToString()
    bad_metadata = {
        "none": [],
        "empty bearer": [("authorization", "Bearer ")],
        "basic": [("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")],
        "a long token": [("authorization", "Bearer " + "k" * 7000)],
        "a made-up key": [("authorization", "Bearer pk_00000000_" + "0" * 40)],
        "a key in a binary header": [("authorization-bin", key.encode())],
        "two authorizations": [("authorization", "Bearer nope"), ("authorization", f"Bearer {key}")],
        "many headers": [(f"x-junk-{i}", "v" * 100) for i in range(60)] + auth,
    }
    for name, metadata in bad_metadata.items():
        calls.append(("GetScorecard", f"metadata: {name}", outcome(channel, get, request, metadata)))
    create = SERVICE.methods_by_name["CreateInterview"]
    read_only = [("authorization", f"Bearer {reader}")]
    only_reads = pb.CreateInterviewRequest(questions=[pb.Question(question_id="q")]).SerializeToString()
    calls.append(("CreateInterview", "a read-only key", outcome(channel, create, only_reads, read_only)))

    tally = Counter(code.name for _, _, code in calls)
    print(f"\ngRPC fuzz: {len(calls)} calls: {dict(sorted(tally.items()))}")
    failures = [(method, case, code.name) for method, case, code in calls if code not in DELIBERATE]
    assert not failures
    assert len(calls) >= 150
    # Each garbage stream was refused, not accepted; and nothing it sent stayed on disk.
    stream_codes = {case: code for method, case, code in calls if method == "UploadAnswer" and case in streams}
    assert all(code != grpc.StatusCode.OK for code in stream_codes.values()), stream_codes
    assert stream_codes["valid first, then malformed messages"] == grpc.StatusCode.INVALID_ARGUMENT
    assert stream_codes["a chunk past the message size limit"] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stream_codes["a declared size past the file limit"] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert sorted(p.name for p in (home / "media" / interview_id).iterdir()) == ["manifest.json"]
    assert all(code == grpc.StatusCode.UNAUTHENTICATED for method, case, code in calls
               if case.startswith("metadata: ") and case not in ("metadata: many headers", "metadata: two authorizations"))

    # Still serving: healthy, and a real call works.
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(service=SERVICE.full_name), timeout=10).status == (
        health_pb2.HealthCheckResponse.SERVING
    )
    again = stub_create(pb.CreateInterviewRequest(questions=[pb.Question(question_id="q1")]).SerializeToString(),
                        metadata=auth, timeout=30)
    assert len(pb.CreateInterviewResponse.FromString(again).interview_id) == 32
    assert "gRPC call failed" not in served.log.read_text()
