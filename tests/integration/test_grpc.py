"""The gRPC API (poise.v1.ScoringService) of `poise serve`, through the generated stubs, as a client uses it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from poise_common.grpc_api.poise.v1 import scoring_pb2 as pb
from poise_common.grpc_api.poise.v1 import scoring_pb2_grpc as pb_grpc
from poise_common.grpc_api.server import GrpcServer, ScoringServicer, port_from_env
from serve_process import serve

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_interview.mp4"
CHUNK = 256 << 10


class Server:
    def __init__(self, base: str, channel: grpc.Channel, keys: dict[str, str]) -> None:
        self.base, self.channel, self.keys = base, channel, keys
        self.stub = pb_grpc.ScoringServiceStub(channel)

    def auth(self, who: str = "writer") -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.keys[who]}")]

    def headers(self, who: str = "writer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def create(self, questions: tuple[str, ...] = ("q1",)) -> str:
        request = pb.CreateInterviewRequest(
            role="generic", questions=[pb.Question(question_id=q, text="Why this role?") for q in questions]
        )
        return self.stub.CreateInterview(request, metadata=self.auth(), timeout=30).interview_id


def chunks(interview_id: str, question_id: str, data: bytes):
    yield pb.UploadAnswerRequest(interview_id=interview_id, question_id=question_id, data=data[:CHUNK],
                                 total_bytes=len(data))
    for start in range(CHUNK, len(data), CHUNK):
        yield pb.UploadAnswerRequest(data=data[start:start + CHUNK])


@contextlib.contextmanager
def watching(server: Server, interview: str) -> Iterator[list[pb.ScoreEvent]]:
    """The caller's score events from before the block runs until ``interview`` is scored or failed
    (or the stream ends), gathered by a thread. Subscribed (the initial metadata arrived) before
    the block runs, so no event of what it does can be missed."""
    watch = server.stub.WatchScoreEvents(pb.WatchScoreEventsRequest(), metadata=server.auth(), timeout=300)
    assert ("poise-subscribed", "1") in watch.initial_metadata()
    events: list[pb.ScoreEvent] = []

    def listen() -> None:
        for event in watch:
            events.append(event)
            if event.interview_id == interview and event.type in ("interview.scored", "interview.failed"):
                return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        yield events
        listener.join(240)
    finally:
        watch.cancel()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("poise-home"), grpc=True) as served:
        keys = {
            "writer": served.key("acme", "interviews:write,scores:read"),
            "reader": served.key("acme", "scores:read"),
            "other": served.key("globex", "interviews:write,scores:read"),
        }
        channel = grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}")
        try:
            yield Server(served.base, channel, keys)
        finally:
            channel.close()


def test_grpc_scores_an_upload_like_rest(server):
    stub = server.stub
    interview = server.create()
    upload = stub.UploadAnswer(chunks(interview, "q1", SAMPLE.read_bytes()), metadata=server.auth(), timeout=120)
    assert (upload.interview_id, upload.question_id, upload.size_bytes) == (interview, "q1", SAMPLE.stat().st_size)
    assert upload.duration_s > 1 and upload.width > 0 and upload.height > 0 and upload.codecs.audio

    with watching(server, interview) as events:
        done = stub.CompleteInterview(pb.CompleteInterviewRequest(interview_id=interview), metadata=server.auth(),
                                      timeout=120)
        assert (done.interview_id, done.status) == (interview, "processing")
        deadline = time.monotonic() + 240
        while True:
            try:
                card = stub.GetScorecard(pb.GetScorecardRequest(interview_id=interview), metadata=server.auth(),
                                         timeout=10)
                if card.status == "scored":
                    break
                assert card.status == "processing" and not card.scorecard_json
            except grpc.RpcError as exc:  # until fusion has seen the interview's first message
                assert exc.code() == grpc.StatusCode.NOT_FOUND
            assert time.monotonic() < deadline, "not scored in time"
            time.sleep(0.5)

    rest = httpx.get(f"{server.base}/v1/interviews/{interview}/scorecard", headers=server.headers(), timeout=10)
    assert rest.status_code == 200
    assert card.scorecard_json == rest.text
    document = json.loads(card.scorecard_json)
    assert document["tenant"] == "acme"

    types = [e.type for e in events if e.interview_id == interview]
    assert "answer.scored" in types and types[-1] == "interview.scored"
    scored = events[-1]
    scores = {c["name"]: c["score"] for c in document["competencies"] if c["score"] is not None}
    assert dict(scored.competencies) == scores
    assert scored.model_version == document["model_version"]
    answered = next(e for e in events if e.type == "answer.scored")
    assert answered.question_id == "q1" and answered.answer_id

    listed = stub.ListScorecards(pb.ListScorecardsRequest(status="scored"), metadata=server.auth(), timeout=10)
    assert [i.interview_id for i in listed.items] == [interview]
    assert listed.items[0].HasField("scored_at") and listed.items[0].answer_count == 1
    assert listed.next_page_token == ""
    assert not stub.ListScorecards(pb.ListScorecardsRequest(role="no-such-role"), metadata=server.auth(),
                                   timeout=10).items
    # The other tenant sees none of it.
    assert not stub.ListScorecards(pb.ListScorecardsRequest(), metadata=server.auth("other"), timeout=10).items


def test_competencies_without_evidence_are_named_and_the_event_stream_goes_on(server, media_dir):
    # The Pexels clip has a face and an all-zero audio track: nothing said, so the competencies
    # that rest on speech have no score (insufficient evidence), which a map of doubles cannot hold.
    interview = server.create()
    clip = (media_dir / "pexels_face_20s.mp4").read_bytes()
    server.stub.UploadAnswer(chunks(interview, "q1", clip), metadata=server.auth(), timeout=120)
    with watching(server, interview) as events:
        server.stub.CompleteInterview(pb.CompleteInterviewRequest(interview_id=interview), metadata=server.auth(),
                                      timeout=120)
    scored = [e for e in events if e.interview_id == interview and e.type == "interview.scored"]
    assert len(scored) == 1, [(e.type, e.interview_id) for e in events]
    card = server.stub.GetScorecard(pb.GetScorecardRequest(interview_id=interview), metadata=server.auth(),
                                    timeout=10)
    competencies = json.loads(card.scorecard_json)["competencies"]
    unscored = [c["name"] for c in competencies if c["score"] is None]
    assert unscored, competencies
    assert list(scored[0].insufficient_evidence) == unscored
    assert dict(scored[0].competencies) == {c["name"]: c["score"] for c in competencies if c["score"] is not None}


def test_health_and_reflection(server):
    health = health_pb2_grpc.HealthStub(server.channel)
    for service in ("", "poise.v1.ScoringService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflector = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    answers = reflector.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                             timeout=10)
    names = {s.name for answer in answers for s in answer.list_services_response.service}
    assert {"poise.v1.ScoringService", "grpc.health.v1.Health"} <= names


def _code(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=30, **kwargs)
    return caught.value


def test_keys_scopes_and_tenants(server):
    stub = server.stub
    interview = server.create()
    request = pb.GetScorecardRequest(interview_id=interview)
    assert _code(stub.GetScorecard, request).code() == grpc.StatusCode.UNAUTHENTICATED
    bad_key = [("authorization", "Bearer pk_nope_nope")]
    assert _code(stub.GetScorecard, request, metadata=bad_key).code() == grpc.StatusCode.UNAUTHENTICATED
    denied = _code(stub.UploadAnswer, chunks(interview, "q1", b"x" * 10), metadata=server.auth("reader"))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED and "interviews:write" in denied.details()
    # Not yet published, and another tenant's: both simply do not exist.
    assert _code(stub.GetScorecard, request, metadata=server.auth("other")).code() == grpc.StatusCode.NOT_FOUND
    completed = pb.CompleteInterviewRequest(interview_id=interview)
    assert _code(stub.CompleteInterview, completed, metadata=server.auth("other")).code() == grpc.StatusCode.NOT_FOUND
    missing = _code(stub.CompleteInterview, completed, metadata=server.auth())
    assert missing.code() == grpc.StatusCode.FAILED_PRECONDITION
    bad = pb.CreateInterviewRequest(role="generic")  # no questions
    assert _code(stub.CreateInterview, bad, metadata=server.auth()).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_malformed_upload_is_refused_with_the_gateways_message(server):
    interview = server.create(("q1", "q2"))
    junk = os.urandom(300_000)
    refused = _code(server.stub.UploadAnswer, chunks(interview, "q1", junk), metadata=server.auth())
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    rest = httpx.put(f"{server.base}/v1/interviews/{interview}/answers/q2", content=junk, headers=server.headers(),
                     timeout=60)
    assert rest.status_code == 422
    error = rest.json()["error"]
    assert refused.details() == error["message"]
    assert ("poise-error-code", error["code"]) in refused.trailing_metadata()


def test_methods_without_a_backend_name_the_service_that_serves_them():
    async def run() -> None:
        grpc_server = GrpcServer(ScoringServicer(keys=mock.Mock()), "127.0.0.1", 0)
        await grpc_server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
                stub = pb_grpc.ScoringServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as upload:
                    await stub.CompleteInterview(pb.CompleteInterviewRequest(interview_id="x"), timeout=10)
                with pytest.raises(grpc.aio.AioRpcError) as read:
                    await stub.GetScorecard(pb.GetScorecardRequest(interview_id="x"), timeout=10)
        finally:
            await grpc_server.stop()
        assert upload.value.code() == read.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "the gateway" in upload.value.details() and "fusion" in read.value.details()

    asyncio.run(run())


def test_grpc_port_from_env():
    assert port_from_env({}) is None and port_from_env({"POISE_GRPC_PORT": ""}) is None
    assert port_from_env({"POISE_GRPC_PORT": "50052"}) == 50052
    with pytest.raises(ValueError, match="POISE_GRPC_PORT"):
        port_from_env({"POISE_GRPC_PORT": "http"})


def test_generated_code_is_up_to_date():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_proto.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
