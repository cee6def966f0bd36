"""The gRPC scorecard methods over a real SQLite store, served and called over a real channel:
a failed interview says why and is listed, pages end without a token, and score events with a
competency that could not be scored reach their subscribers."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from poise_common.auth import KeyStore
from poise_common.bus.memory import MemoryBus
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.grpc_api.poise.v1 import scoring_pb2 as pb
from poise_common.grpc_api.poise.v1 import scoring_pb2_grpc as pb_grpc
from poise_common.grpc_api.server import GrpcServer, ScoringServicer
from poise_common.messages import Envelope, InterviewOpened, Question, ScoreEvent, Topics
from poise_fusion.events import EventHub
from poise_fusion.store import FusionStore

UNKNOWN_ROLE = "unknown role 'astronaut'; known roles: generic, sales-development-rep"


@pytest.fixture()
def store(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'poise.db'}")
    upgrade(engine)
    store = FusionStore(session_factory(engine))
    yield store
    engine.dispose()


def opened(interview_id: str, tenant: str = "acme") -> Envelope:
    return Envelope(interview_id=interview_id, tenant=tenant, stream="control", seq=0,
                    payload=InterviewOpened(role="generic", questions=[Question(question_id="q1", text="Why?")]))


async def call_served(store: FusionStore, call, events: EventHub | None = None, tenant: str = "acme"):
    """``call(stub, metadata)`` against a gRPC server on ``store`` (and ``events``), with a reader's key."""
    keys = KeyStore(store.sessions)
    metadata = (("authorization", f"Bearer {keys.create(tenant, ['scores:read'])}"),)
    server = GrpcServer(ScoringServicer(keys, store=store, events=events), "127.0.0.1", 0, grace_s=0)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            return await call(pb_grpc.ScoringServiceStub(channel), metadata)
    finally:
        await server.stop()


def served(store: FusionStore, call):
    return asyncio.run(call_served(store, call))


def test_a_failed_interview_says_why_and_is_listed(store):
    for interview_id in ("iv1", "iv2", "theirs"):
        store.apply(opened(interview_id, "globex" if interview_id == "theirs" else "acme"))
    store.discard_interview("iv1", "acme", UNKNOWN_ROLE)
    store.discard_interview("theirs", "globex", UNKNOWN_ROLE)

    async def call(stub, metadata):
        failed = await stub.GetScorecard(pb.GetScorecardRequest(interview_id="iv1"), metadata=metadata, timeout=10)
        processing = await stub.GetScorecard(pb.GetScorecardRequest(interview_id="iv2"), metadata=metadata,
                                             timeout=10)
        listed = await stub.ListScorecards(pb.ListScorecardsRequest(status="failed"), metadata=metadata, timeout=10)
        return failed, processing, listed

    failed, processing, listed = served(store, call)
    assert failed.status == "failed" and not failed.scorecard_json
    assert (failed.error.code, failed.error.message) == ("not_scorable", UNKNOWN_ROLE)
    assert processing.status == "processing" and not processing.HasField("error")
    assert [(i.interview_id, i.status, i.role, i.answer_count) for i in listed.items] == [("iv1", "failed", "", 0)]
    assert not listed.items[0].HasField("scored_at") and listed.next_page_token == ""


def test_a_full_last_page_has_no_page_token(store):
    for n in range(4):
        store.apply(opened(f"iv{n}"))

    async def call(stub, metadata):
        first = await stub.ListScorecards(pb.ListScorecardsRequest(page_size=2), metadata=metadata, timeout=10)
        last = await stub.ListScorecards(pb.ListScorecardsRequest(page_size=2, page_token=first.next_page_token),
                                         metadata=metadata, timeout=10)
        return first, last

    first, last = served(store, call)
    assert [i.interview_id for i in first.items] == ["iv3", "iv2"] and first.next_page_token
    assert [i.interview_id for i in last.items] == ["iv1", "iv0"] and last.next_page_token == ""


def scored_event(interview_id: str, scores: dict[str, float | None]) -> Envelope:
    card = {"model_version": "generic@1.0+norms",
            "competencies": [{"name": name, "score": score} for name, score in scores.items()]}
    return Envelope(interview_id=interview_id, tenant="acme", stream="score", seq=0,
                    payload=ScoreEvent(type="interview.scored", scorecard=card))


def test_a_competency_without_a_score_is_listed_apart_and_the_stream_goes_on(store):
    async def scenario():
        bus = MemoryBus()
        await bus.start()
        hub = EventHub(bus)
        await hub.start()

        async def watch(stub, metadata):
            stream = stub.WatchScoreEvents(pb.WatchScoreEventsRequest(), metadata=metadata, timeout=30)
            await stream.initial_metadata()  # subscribed: what is published from here on arrives
            await bus.publish(Topics.SCORECARDS, scored_event("iv1", {"empathy": None, "confidence": 61.5,
                                                                      "teamwork": None}))
            await bus.publish(Topics.SCORECARDS, scored_event("iv2", {"empathy": 70.0}))
            received = [await stream.read(), await stream.read()]
            stream.cancel()
            return received

        try:
            return await call_served(store, watch, hub)
        finally:
            await hub.stop()
            await bus.stop()

    first, second = asyncio.run(scenario())
    assert (first.interview_id, dict(first.competencies)) == ("iv1", {"confidence": 61.5})
    assert list(first.insufficient_evidence) == ["empathy", "teamwork"]
    assert (second.interview_id, dict(second.competencies), list(second.insufficient_evidence)) == (
        "iv2", {"empathy": 70.0}, [])
