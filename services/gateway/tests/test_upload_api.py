"""The distributed upload API on real recordings: streaming, refusals, limits, publishing."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from fastapi import FastAPI

from poise_common.auth import KeyStore
from poise_common.bus.memory import MemoryBus
from poise_common.crypto import KeyRing, LocalMasterKey, MasterKeys
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.grpc_api.poise.v1 import scoring_pb2 as pb
from poise_common.grpc_api.poise.v1 import scoring_pb2_grpc as pb_grpc
from poise_common.grpc_api.server import GrpcServer, ScoringServicer
from poise_common.messages import AnswerMediaDone, AudioEnd, Envelope, FramesEnd, InterviewOpened, Topics
from poise_common.settings import GatewaySettings, PoiseSettings
from poise_fusion.erasure import CandidateIndex
from poise_fusion.framework import available_frameworks
from poise_fusion.store import FusionStore
from poise_gateway.api import UploadDesk, create_router
from poise_gateway.errors import MediaJobKilled
from poise_gateway import api as gateway_api
from poise_gateway.service import Gateway

QUESTIONS = [
    {"question_id": "q1", "text": "Tell me about a time you disagreed with a colleague."},
    {"question_id": "q2", "text": "How do you explain a technical idea to a customer?"},
]


class Harness:
    def __init__(self, client: httpx.AsyncClient, bus: MemoryBus, desk: UploadDesk, keys: KeyStore) -> None:
        self.client, self.bus, self.desk, self.keys = client, bus, desk, keys

    async def create(self, questions=QUESTIONS, **extra) -> str:
        response = await self.client.post("/v1/interviews", json={"questions": questions, **extra})
        assert response.status_code == 201, response.text
        return response.json()["interview_id"]

    async def put(self, interview_id: str, question_id: str, content) -> httpx.Response:
        return await self.client.put(f"/v1/interviews/{interview_id}/answers/{question_id}", content=content)

    def files(self, interview_id: str) -> list[str]:
        return sorted(p.name for p in (self.desk.root / interview_id).iterdir())

    async def messages(self, topic: str) -> list[Envelope]:
        return [Envelope.from_bytes(record) for record in await self.bus.read_all(topic)]


@asynccontextmanager
async def harness(tmp_path: Path, candidates: bool = False, **limits) -> AsyncIterator[Harness]:
    """A gateway on a fresh in-memory bus over ``tmp_path``'s media and database (so a second one
    is the same gateway after a restart); with ``candidates``, a desk that knows the database."""
    settings = PoiseSettings(home=tmp_path / "home", gateway=GatewaySettings(**limits))
    bus = MemoryBus()
    await bus.start()
    engine = create_db_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    index = CandidateIndex(sessions, KeyRing(sessions, MasterKeys([LocalMasterKey("test", bytes(32))])))
    desk = UploadDesk(settings.media_dir, Gateway(bus, settings.gateway), settings.gateway, default_role="generic",
                      candidates=index if candidates else None)
    desk.prepare()
    keys = KeyStore(sessions)
    app = FastAPI()
    app.include_router(create_router(desk, settings, keys))
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {keys.create('local', ['interviews:write'])}"}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", timeout=60, headers=headers
        ) as client:
            yield Harness(client, bus, desk, keys)
    finally:
        await bus.stop()
        engine.dispose()


async def chunks(path: Path, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """The file as a chunked body without a Content-Length, the way a streaming client sends it."""
    with path.open("rb") as fh:
        while block := fh.read(size):
            yield block


def test_create_upload_complete_publishes_every_answer_in_question_order(tmp_path, media_dir):
    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create(role="sales-development-rep", candidate_ref="ats-123")
            first = await h.put(interview_id, "q1", chunks(media_dir / "single_face.mp4"))
            second = await h.put(interview_id, "q2", (media_dir / "talking_head_3.mp4").read_bytes())
            assert first.status_code == 200, first.text
            assert second.status_code == 200, second.text
            assert len([f for f in h.files(interview_id) if f.endswith(".media")]) == 2
            done = await h.client.post(f"/v1/interviews/{interview_id}/complete")
            control = await h.messages(Topics.MEDIA_CONTROL)
            frames = await h.messages(Topics.MEDIA_FRAMES)
            audio = await h.messages(Topics.MEDIA_AUDIO)
            files = h.files(interview_id)
            manifest = json.loads((h.desk.root / interview_id / "manifest.json").read_text())
            late = await h.put(interview_id, "q1", (media_dir / "single_face.mp4").read_bytes())
            again = await h.client.post(f"/v1/interviews/{interview_id}/complete")
            republished = len(await h.bus.read_all(Topics.MEDIA_CONTROL))
            return interview_id, first, second, done, control, frames, audio, files, manifest, late, again, republished

    interview_id, first, second, done, control, frames, audio, files, manifest, late, again, republished = (
        asyncio.run(scenario())
    )
    facts = first.json()
    assert facts["width"] == 640 and facts["height"] == 360
    assert facts["codecs"] == {"video": "h264", "audio": "mp3float"}
    assert 2.3 < facts["duration_s"] < 2.5
    assert second.json()["width"] == 590

    assert done.status_code == 202
    assert done.json() == {"interview_id": interview_id, "status": "processing"}
    opened, *announced = control
    assert isinstance(opened.payload, InterviewOpened)
    assert opened.interview_id == interview_id and opened.tenant == "local"
    assert opened.payload.role == "sales-development-rep"
    assert [q.question_id for q in opened.payload.questions] == ["q1", "q2"]
    assert [(e.answer_id, e.payload.question_id) for e in announced] == [
        (f"{interview_id}-a1", "q1"), (f"{interview_id}-a2", "q2"),
    ]
    assert all(isinstance(e.payload, AnswerMediaDone) for e in announced)
    # Every frame and audio message the announcement counts is on the bus, ended by its marker.
    for envelope in announced:
        media: AnswerMediaDone = envelope.payload
        answer_frames = [e for e in frames if e.answer_id == envelope.answer_id]
        answer_audio = [e for e in audio if e.answer_id == envelope.answer_id]
        assert media.frame_count > 10 and len(answer_frames) == media.frame_count + 1
        assert isinstance(answer_frames[-1].payload, FramesEnd)
        assert isinstance(answer_audio[-1].payload, AudioEnd) and len(answer_audio) == media.audio_count + 1
    # Published media is kept for playback (until retention or erasure), named by the completed manifest.
    assert files == sorted(["manifest.json", *(answer["file"] for answer in manifest["answers"].values())])
    assert manifest["status"] == "completed"
    assert all(answer["file"].endswith(".media") for answer in manifest["answers"].values())
    assert late.status_code == 409 and late.json()["error"]["code"] == "completed"
    assert again.status_code == 202 and republished == len(control)  # a repeat publishes nothing more


def test_interviews_opened_one_after_another_go_to_different_partitions(tmp_path):
    """A few interviews at once each get a partition (and so a worker) of their own."""
    async def scenario():
        async with harness(tmp_path) as h:
            ids = [await h.create() for _ in range(8)]
            return ids, [h.bus.partition_of(i) for i in ids], h.bus.partition_count

    ids, landed, partitions = asyncio.run(scenario())
    assert partitions == 4
    assert len(set(landed[:4])) == 4 and len(set(landed[4:])) == 4
    assert len(set(ids)) == 8


def test_random_bytes_are_refused_with_a_code_and_leave_nothing(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create()
            response = await h.put(interview_id, "q1", os.urandom(200_000))
            return response, h.files(interview_id)

    response, files = asyncio.run(scenario())
    assert response.status_code == 422
    # About one random file in a hundred passes FFmpeg's format sniffing as something (LRC lyrics,
    # raw H.263): refused as a format Poise does not read, which is as clear.
    assert response.json()["error"]["code"] in {"unreadable", "corrupt", "not_video", "unsupported_container"}
    assert response.json()["error"]["message"]
    assert files == ["manifest.json"]


def test_audio_only_upload_is_refused_as_no_video(tmp_path, media_dir):
    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create()
            return await h.put(interview_id, "q1", (media_dir / "jfk.flac").read_bytes()), h.files(interview_id)

    response, files = asyncio.run(scenario())
    assert response.status_code == 422 and response.json()["error"]["code"] == "no_video"
    assert files == ["manifest.json"]


def test_an_upload_over_the_limit_is_cut_off_with_413_and_no_leftover(tmp_path, media_dir):
    video = media_dir / "talking_head_3.mp4"  # about 390 kB
    limit = 100_000

    async def scenario():
        async with harness(tmp_path, max_file_bytes=limit) as h:
            interview_id = await h.create()
            streamed = await h.put(interview_id, "q1", chunks(video, 16 * 1024))
            declared = await h.put(interview_id, "q1", video.read_bytes())
            return streamed, declared, h.files(interview_id)

    streamed, declared, files = asyncio.run(scenario())
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "too_large"
    assert declared.status_code == 413
    assert files == ["manifest.json"]


def test_unknown_interview_or_question_is_404(tmp_path, media_dir):
    body = (media_dir / "single_face.mp4").read_bytes()

    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create()
            return [
                await h.put("0" * 32, "q1", body),
                await h.put("..%2F..%2Fetc", "q1", body),
                    await h.put("not-an-interview-id", "q1", body),
                await h.put(interview_id, "q9", body),
                await h.client.post(f"/v1/interviews/{'f' * 32}/complete"),
            ], h.files(interview_id)

    responses, files = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [404] * 5
    # The encoded traversal never reaches a route; every other miss is the API's own 404.
    assert all(r.json()["error"]["code"] == "not_found" for r in responses[:1] + responses[2:])
    assert files == ["manifest.json"]


def test_complete_before_every_answer_is_409_and_publishes_nothing(tmp_path, media_dir):
    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create()
            await h.put(interview_id, "q1", (media_dir / "single_face.mp4").read_bytes())
            response = await h.client.post(f"/v1/interviews/{interview_id}/complete")
            return response, await h.bus.read_all(Topics.MEDIA_CONTROL)

    response, control = asyncio.run(scenario())
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "answers_missing"
    assert response.json()["error"]["missing"] == ["q2"]
    assert control == []


def test_a_new_upload_replaces_the_answer_and_its_file(tmp_path, media_dir):
    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create()
            await h.put(interview_id, "q1", (media_dir / "single_face.mp4").read_bytes())
            again = await h.put(interview_id, "q1", (media_dir / "talking_head_5.mp4").read_bytes())
            return again, h.files(interview_id)

    again, files = asyncio.run(scenario())
    assert again.status_code == 200 and again.json()["width"] == 524
    assert len([f for f in files if f.endswith(".media")]) == 1


def test_bad_interview_requests_are_refused(tmp_path):
    bad = [
        {"questions": []},
        {"questions": [{"question_id": f"q{i}", "text": "?"} for i in range(51)]},
        {"questions": [QUESTIONS[0], QUESTIONS[0]]},
        {"questions": QUESTIONS, "role": "Sales Rep!"},
        {"questions": [{"question_id": "a/b", "text": "?"}]},
    ]

    async def scenario():
        async with harness(tmp_path) as h:
            responses = [await h.client.post("/v1/interviews", json=body) for body in bad]
            return responses, list(h.desk.root.iterdir())

    responses, folders = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [422] * len(bad)
    assert folders == []


def test_complete_after_a_failure_half_way_publishes_everything_again(tmp_path, media_dir):
    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create()
            for question_id, name in (("q1", "single_face.mp4"), ("q2", "talking_head_5.mp4")):
                assert (await h.put(interview_id, question_id, (media_dir / name).read_bytes())).status_code == 200
            publish = h.desk.gateway.publish_answer
            calls = Counter()

            async def dies_on_the_second_answer(interview_id, tenant, index, upload, info, attempt):
                calls[index] += 1
                if index == 1 and calls[index] == 1:
                    raise ConnectionError("broker went away")
                await publish(interview_id, tenant, index, upload, info, attempt)

            h.desk.gateway.publish_answer = dies_on_the_second_answer
            failed = await h.client.post(f"/v1/interviews/{interview_id}/complete")
            kept = h.files(interview_id)
            blocked = await h.put(interview_id, "q1", (media_dir / "single_face.mp4").read_bytes())
            retried = await h.client.post(f"/v1/interviews/{interview_id}/complete")
            return interview_id, failed, kept, blocked, retried, await h.messages(Topics.MEDIA_CONTROL), h.files(
                interview_id
            )

    interview_id, failed, kept, blocked, retried, control, files = asyncio.run(scenario())
    assert failed.status_code == 503 and failed.json()["error"]["code"] == "publish_failed"
    assert len([f for f in kept if f.endswith(".media")]) == 2  # the media waits for the retry
    assert blocked.status_code == 409  # answers are frozen once publishing began
    assert retried.status_code == 202
    kinds = [(e.answer_id, e.payload.kind) for e in control]
    # The repeat publishes the whole interview again; downstream dedupes on (answer_id, stream, seq).
    assert kinds == [
        ("", "interview.opened"), (f"{interview_id}-a1", "answer.media_done"),
        ("", "interview.opened"), (f"{interview_id}-a1", "answer.media_done"),
        (f"{interview_id}-a2", "answer.media_done"),
    ]
    assert files == kept  # published, the same media stays for playback


def test_prepare_removes_what_a_dead_process_left(tmp_path, media_dir):
    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create(questions=QUESTIONS[:1])
            await h.put(interview_id, "q1", (media_dir / "single_face.mp4").read_bytes())
            await h.client.post(f"/v1/interviews/{interview_id}/complete")
            return h.desk, interview_id

    desk, interview_id = asyncio.run(scenario())
    folder = desk.root / interview_id
    stale = folder / ".a1-dead.part"
    stale.write_bytes(b"partial")
    os.utime(stale, (0, 0))
    answer = json.loads((folder / "manifest.json").read_text())["answers"]["q1"]["file"]
    orphan = folder / "a1-orphan.media"  # replaced, but the process died before deleting it
    orphan.write_bytes(b"media")
    desk.prepare()
    assert sorted(p.name for p in folder.iterdir()) == sorted([answer, "manifest.json"])  # the answer is kept


def test_uploads_need_a_writer_key_and_stay_within_the_tenant(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create()
            anonymous = await h.client.post("/v1/interviews", json={"questions": QUESTIONS}, headers={"Authorization": ""})
            reader = h.keys.create("local", ["scores:read"])
            read_only = await h.client.post(
                "/v1/interviews", json={"questions": QUESTIONS}, headers={"Authorization": f"Bearer {reader}"}
            )
            other = h.keys.create("other-tenant", ["interviews:write"])
            theirs = await h.client.post(
                f"/v1/interviews/{interview_id}/complete", headers={"Authorization": f"Bearer {other}"}
            )
            return anonymous, read_only, theirs

    anonymous, read_only, theirs = asyncio.run(scenario())
    assert anonymous.status_code == 401
    assert read_only.status_code == 403
    assert theirs.status_code == 404  # another tenant's interview does not exist for this caller


def test_an_unknown_role_is_refused_at_creation_over_rest_and_grpc(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            rest = await h.client.post("/v1/interviews", json={"questions": QUESTIONS, "role": "nonexistent"})
            server = GrpcServer(ScoringServicer(h.keys, desk=h.desk), "127.0.0.1", 0)
            await server.start()
            metadata = (("authorization", f"Bearer {h.keys.create('local', ['interviews:write'])}"),)
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                    request = pb.CreateInterviewRequest(
                        role="nonexistent", questions=[pb.Question(**q) for q in QUESTIONS])
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await pb_grpc.ScoringServiceStub(channel).CreateInterview(request, metadata=metadata)
            finally:
                await server.stop()
            known = await h.create(role="sales-development-rep")
            return rest, refused.value, list(h.desk.root.iterdir()), known

    rest, refused, folders, known = asyncio.run(scenario())
    roles = sorted(available_frameworks())
    assert "nonexistent" not in roles and len(roles) >= 2
    error = rest.json()["error"]
    assert rest.status_code == 422 and error["code"] == "unknown_role"
    assert error["known_roles"] == roles and all(role in error["message"] for role in roles)
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and refused.details() == error["message"]
    assert ("poise-error-code", "unknown_role") in tuple(refused.trailing_metadata())
    assert [f.name for f in folders] == [known]  # nothing was written for the refused ones


def test_an_answer_whose_full_decode_fails_is_withdrawn_and_the_interview_opens_again(tmp_path, media_dir,
                                                                                        costly_video):
    async def scenario():
        # The probe passes; decoding the frames needs more CPU than 0.3 s + 1 ms per second of media.
        async with harness(tmp_path, media_cpu_s=0.3, media_cpu_per_media_s=0.001) as h:
            interview_id = await h.create()
            assert (await h.put(interview_id, "q1", (media_dir / "single_face.mp4").read_bytes())).status_code == 200
            assert (await h.put(interview_id, "q2", costly_video.read_bytes())).status_code == 200
            refused = await h.client.post(f"/v1/interviews/{interview_id}/complete")
            again = await h.client.post(f"/v1/interviews/{interview_id}/complete")
            manifest = json.loads((h.desk.root / interview_id / "manifest.json").read_text())
            files = h.files(interview_id)
            withdrawn = {topic: await h.messages(topic) for topic in (Topics.MEDIA_CONTROL, Topics.MEDIA_FRAMES,
                                                                       Topics.MEDIA_AUDIO)}
            uploaded = await h.put(interview_id, "q2", (media_dir / "talking_head_3.mp4").read_bytes())
            done = await h.client.post(f"/v1/interviews/{interview_id}/complete")
            control = await h.messages(Topics.MEDIA_CONTROL)
            return interview_id, refused, again, manifest, files, withdrawn, uploaded, done, control

    interview_id, refused, again, manifest, files, withdrawn, uploaded, done, control = asyncio.run(scenario())
    error = refused.json()["error"]
    assert refused.status_code == 422 and error["code"] == "decode_timeout" and error["question_id"] == "q2"
    assert "'q2'" in error["message"] and "CPU seconds" in error["message"]
    # Open again without the refused answer: complete asks for it, and nothing half-written stays.
    assert again.status_code == 409 and again.json()["error"]["missing"] == ["q2"]
    assert manifest["status"] == "open" and manifest["attempt"] == 1 and list(manifest["answers"]) == ["q1"]
    assert files == sorted(["manifest.json", manifest["answers"]["q1"]["file"]])
    first, second = f"{interview_id}-a1", f"{interview_id}-a2"
    kinds = [(e.answer_id, e.payload.kind) for e in withdrawn[Topics.MEDIA_CONTROL]]
    assert kinds == [("", "interview.opened"), (first, "answer.media_done"), ("", "interview.withdrawn")]
    assert withdrawn[Topics.MEDIA_CONTROL][-1].payload.answer_ids == [first, second]
    # The refused answer's streams were ended, so the analysers let go of what they hold of it.
    for topic, end in ((Topics.MEDIA_FRAMES, "frames.end"), (Topics.MEDIA_AUDIO, "audio.end")):
        ends = [e for e in withdrawn[topic] if e.answer_id == second and e.payload.kind == end]
        assert len(ends) == 1
    refused_frames = [e for e in withdrawn[Topics.MEDIA_FRAMES] if e.answer_id == second]
    assert len(refused_frames) - 1 < 30 * GatewaySettings().sample_fps  # stopped part-way
    assert uploaded.status_code == 200 and done.status_code == 202
    # Published again under new ids: nothing of the withdrawn attempt can mix into this one.
    republished = [(e.answer_id, e.payload.kind) for e in control[len(kinds):]]
    assert republished == [("", "interview.opened"), (f"{first}-r1", "answer.media_done"),
                           (f"{second}-r1", "answer.media_done")]


def test_a_decoder_stopped_from_outside_is_a_503_to_retry_not_a_damaged_file(tmp_path, media_dir, monkeypatch):
    stopped = MediaJobKilled("decode_interrupted", "the server stopped the process reading the file")

    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create(questions=QUESTIONS[:1])
            probe = gateway_api.isolated_probe

            def killed(path, limits):
                monkeypatch.setattr(gateway_api, "isolated_probe", probe)  # once
                raise stopped

            monkeypatch.setattr(gateway_api, "isolated_probe", killed)
            upload = await h.put(interview_id, "q1", (media_dir / "single_face.mp4").read_bytes())
            left = h.files(interview_id)
            assert (await h.put(interview_id, "q1", (media_dir / "single_face.mp4").read_bytes())).status_code == 200
            publish = h.desk.gateway.publish_answer

            async def killed_once(*args):
                h.desk.gateway.publish_answer = publish
                raise stopped

            h.desk.gateway.publish_answer = killed_once
            failed = await h.client.post(f"/v1/interviews/{interview_id}/complete")
            status = json.loads((h.desk.root / interview_id / "manifest.json").read_text())["status"]
            retried = await h.client.post(f"/v1/interviews/{interview_id}/complete")
            return interview_id, upload, left, failed, status, retried, await h.messages(Topics.MEDIA_CONTROL)

    interview_id, upload, left, failed, status, retried, control = asyncio.run(scenario())
    assert upload.status_code == 503 and upload.json()["error"]["code"] == "decode_interrupted"
    assert left == ["manifest.json"]
    assert failed.status_code == 503 and failed.json()["error"]["code"] == "publish_failed"
    assert status == "publishing" and retried.status_code == 202
    # Nothing was withdrawn: the retry publishes the same answer ids again.
    assert [(e.answer_id, e.payload.kind) for e in control] == [
        ("", "interview.opened"), ("", "interview.opened"), (f"{interview_id}-a1", "answer.media_done")]


def test_a_completed_interview_whose_messages_died_with_the_process_is_published_again(tmp_path, media_dir):
    async def first_run() -> str:
        async with harness(tmp_path, candidates=True) as h:
            interview_id = await h.create(questions=QUESTIONS[:1])
            assert (await h.put(interview_id, "q1", (media_dir / "single_face.mp4").read_bytes())).status_code == 200
            assert (await h.client.post(f"/v1/interviews/{interview_id}/complete")).status_code == 202
            return interview_id

    async def restarted(interview_id: str) -> tuple[list, list, list]:
        async with harness(tmp_path, candidates=True) as h:  # its in-memory bus starts empty
            await asyncio.sleep(0)  # prepare() hands what it found to the loop
            if h.desk._resuming is not None:
                await h.desk._resuming
            at_start = [(e.answer_id, e.payload.kind) for e in await h.messages(Topics.MEDIA_CONTROL)]
            again = await h.client.post(f"/v1/interviews/{interview_id}/complete")
            after = [(e.answer_id, e.payload.kind) for e in await h.messages(Topics.MEDIA_CONTROL)]
            return at_start, after, again.status_code

    interview_id = asyncio.run(first_run())
    opened = ("", "interview.opened")
    at_start, after, status = asyncio.run(restarted(interview_id))
    assert at_start == [opened, (f"{interview_id}-a1", "answer.media_done")]
    assert status == 202 and after == at_start  # published by this run already: not again

    # Once fusion has scored it, a restart publishes nothing, and neither does complete.
    store = FusionStore(session_factory(create_db_engine(f"sqlite:///{tmp_path / 'keys.db'}")))
    store.apply(Envelope(interview_id=interview_id, tenant="local", stream="control", seq=0,
                         payload=InterviewOpened(role="generic", questions=[])))
    assert store.save_scorecard(interview_id, "local", "test", {"interview_id": interview_id})
    at_start, after, status = asyncio.run(restarted(interview_id))
    assert at_start == after == [] and status == 202
