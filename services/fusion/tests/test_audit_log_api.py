"""The audit log as the API writes and serves it, on a real SQLite store: reads over REST and gRPC,
listings, overrides, demographics and scoring make entries with the right actor; an access whose
entry cannot be written is refused; ``GET /v1/audit-log`` serves the caller's tenant's entries."""

from __future__ import annotations

import asyncio
import copy
import csv
import io
import json
import time

import grpc
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from poise_common.audit_trail import AuditTrail, verify
from poise_common.auth import KeyStore
from poise_common.bus.memory import MemoryBus
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.grpc_api.poise.v1 import scoring_pb2 as pb
from poise_common.grpc_api.poise.v1 import scoring_pb2_grpc as pb_grpc
from poise_common.grpc_api.server import GrpcServer, ScoringServicer
from poise_common.messages import Envelope, InterviewOpened, Question, Topics
from poise_common.settings import PoiseSettings
from poise_fusion.api import create_router
from poise_fusion.audit_log_api import create_audit_log_router
from poise_fusion.demographics import DemographicsStore, create_demographics_router
from poise_fusion.overrides import OverrideStore, create_override_router
from poise_fusion.policy import TenantPolicyStore
from poise_fusion.service import FusionService
from poise_fusion.store import FusionStore
from test_policy import messages

CARD = {"interview_id": "iv1", "tenant": "acme", "role": "generic", "model_version": "generic@1.0+norms",
        "policy": "default", "answers": [], "warnings": [], "competencies": [
            {"name": "empathy", "label": "Empathy", "score": 55.0, "band": "moderate", "status": "scored",
             "contributions": [], "evidence": []}]}
REASON = "The candidate said: 'I asked my colleague how she felt' - the model missed it."


class Api:
    """The fusion routes and the gRPC service with an audit trail (``broken``: one that cannot write)."""

    def __init__(self, sessions, audit_sessions=None) -> None:
        self.sessions = sessions
        self.store, self.keys = FusionStore(sessions), KeyStore(sessions)
        self.trail = AuditTrail(audit_sessions or sessions)
        self.app = FastAPI()
        self.app.include_router(create_router(self.store, PoiseSettings(), self.keys, audit=self.trail))
        self.app.include_router(create_override_router(OverrideStore(sessions), self.keys, self.trail))
        self.app.include_router(create_demographics_router(DemographicsStore(sessions), self.keys, self.trail))
        self.app.include_router(create_audit_log_router(self.trail, self.keys))

    def scored(self, interview_id: str, tenant: str = "acme") -> None:
        self.store.apply(Envelope(interview_id=interview_id, tenant=tenant, stream="control", seq=0,
                                  payload=InterviewOpened(role="generic", questions=[Question(question_id="q1",
                                                                                              text="Why?")])))
        card = {**copy.deepcopy(CARD), "interview_id": interview_id, "tenant": tenant}
        assert self.store.save_scorecard(interview_id, tenant, "generic@1.0+norms", card)

    def request(self, method: str, path: str, key: str, **kwargs) -> httpx.Response:
        async def scenario() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://fusion",
                                         headers={"Authorization": f"Bearer {key}"}) as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(scenario())

    def grpc(self, key: str, call):
        async def scenario():
            server = GrpcServer(ScoringServicer(self.keys, store=self.store, audit=self.trail), "127.0.0.1", 0,
                                grace_s=0)
            await server.start()
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                    return await call(pb_grpc.ScoringServiceStub(channel), (("authorization", f"Bearer {key}"),))
            finally:
                await server.stop()

        return asyncio.run(scenario())

    def entries(self) -> list[dict]:
        key = self.keys.create("acme", ["admin"])
        response = self.request("GET", "/v1/audit-log", key)
        assert response.status_code == 200, response.text
        return [json.loads(line) for line in response.text.splitlines()]


def database(path):
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


@pytest.fixture()
def api(tmp_path):
    engine = database(tmp_path / "poise.db")
    yield Api(session_factory(engine))
    engine.dispose()


def key_id(key: str) -> str:
    return key.split("_")[1]


def test_reading_a_scorecard_over_rest_and_grpc_is_recorded_with_the_key_as_actor(api):
    api.scored("iv1")
    api.store.apply(Envelope(interview_id="iv2", tenant="acme", stream="control", seq=0,
                             payload=InterviewOpened(role="generic", questions=[])))  # still processing
    reader = api.keys.create("acme", ["scores:read"])
    stranger = api.keys.create("globex", ["scores:read"])
    assert api.request("GET", "/v1/interviews/iv1/scorecard", reader).status_code == 200
    assert api.request("GET", "/v1/interviews/iv2/scorecard", reader).status_code == 202
    assert api.request("GET", "/v1/interviews/iv1/scorecard", stranger).status_code == 404
    reply = api.grpc(reader, lambda stub, md: stub.GetScorecard(pb.GetScorecardRequest(interview_id="iv1"),
                                                                 metadata=md, timeout=10))
    assert reply.status == "scored"

    reads = [e for e in api.entries() if e["action"] == "scorecard.read"]
    # Only what was served: not the scorecard still processing, not another tenant's miss.
    assert [(e["tenant"], e["actor"], e["interview_id"], e["detail"]) for e in reads] == [
        ("acme", key_id(reader), "iv1", {"via": "rest"}),
        ("acme", key_id(reader), "iv1", {"via": "grpc"}),
    ]
    assert verify(api.sessions).ok


def test_listings_overrides_demographics_and_audits_are_recorded_without_personal_data(api):
    api.scored("iv1")
    reader = api.keys.create("acme", ["scores:read"])
    reviewer = api.keys.create("acme", ["scores:review"])
    writer = api.keys.create("acme", ["interviews:write"])
    admin = api.keys.create("acme", ["admin"])
    assert api.request("GET", "/v1/interviews", reader).status_code == 200
    api.grpc(reader, lambda stub, md: stub.ListScorecards(pb.ListScorecardsRequest(), metadata=md, timeout=10))
    override = api.request("POST", "/v1/interviews/iv1/overrides", reviewer,
                           json={"competency": "empathy", "score": 70, "reason": REASON})
    assert override.status_code == 201, override.text
    assert api.request("PUT", "/v1/interviews/iv1/demographics", writer,
                       json={"sex": "female", "race_ethnicity": "asian"}).status_code == 200
    audit = api.request("GET", "/v1/audit", admin, params={"role": "generic"})
    assert audit.status_code == 200, audit.text

    found = {e["action"]: e for e in api.entries()}
    listings = [(e["actor"], e["detail"]) for e in api.entries() if e["action"] == "scorecard.list"]
    assert listings == [(key_id(reader), {"via": via, "interview_ids": ["iv1"]}) for via in ("rest", "grpc")]
    assert found["score.override"]["actor"] == key_id(reviewer)
    assert found["score.override"]["detail"] == {"override_id": override.json()["id"], "competency": "empathy",
                                                 "score": 70.0, "original_score": 55.0}
    assert (found["demographics.write"]["actor"], found["demographics.write"]["detail"]) == (key_id(writer), None)
    assert found["audit.run"]["detail"] == {"role": "generic", "competency": None, "mode": "scoring_rate",
                                            "format": "json"}
    text = json.dumps(api.entries())
    assert "colleague" not in text and "female" not in text and "asian" not in text


def test_scoring_is_recorded_by_the_system(tmp_path):
    engine = database(tmp_path / "poise.db")
    sessions = session_factory(engine)
    trail = AuditTrail(sessions)

    async def scenario() -> list[Envelope]:
        bus = MemoryBus()
        await bus.start()
        service = FusionService(bus, FusionStore(sessions), PoiseSettings(), TenantPolicyStore(sessions),
                                audit=trail)
        for env in messages("acme", consent=None):
            await service.handle(env)
        published = [Envelope.from_bytes(r) for r in await bus.read_all(Topics.SCORECARDS)]
        await bus.stop()
        return published

    published = asyncio.run(scenario())
    assert [e.payload.type for e in published][-1] == "interview.scored"
    scored = published[-1].payload.scorecard
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT tenant, actor, action, interview_id, detail FROM audit_events")).all()
    assert [tuple(r[:4]) for r in rows] == [("acme", "system", "interview.scored", "iv")]
    assert json.loads(rows[0][4]) == {"model_version": scored["model_version"], "policy": "default"}
    engine.dispose()


def test_an_access_whose_entry_cannot_be_written_is_refused(tmp_path):
    engine = database(tmp_path / "poise.db")
    # The audit log's database lacks its table: every append fails, as with an outage.
    broken = create_db_engine(f"sqlite:///{tmp_path / 'unmigrated.db'}")
    api = Api(session_factory(engine), audit_sessions=session_factory(broken))
    api.scored("iv1")
    reader = api.keys.create("acme", ["scores:read"])
    refused = api.request("GET", "/v1/interviews/iv1/scorecard", reader)
    assert refused.status_code == 503 and refused.json()["detail"]["code"] == "audit_unavailable"
    assert refused.headers["retry-after"] == "5"

    async def read(stub, md):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetScorecard(pb.GetScorecardRequest(interview_id="iv1"), metadata=md, timeout=10)
        return caught.value

    error = api.grpc(reader, read)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert ("poise-error-code", "audit_unavailable") in tuple(error.trailing_metadata())
    engine.dispose()
    broken.dispose()


def test_the_audit_log_route_serves_the_callers_tenant_filtered(api):
    api.scored("iv1")
    api.scored("gx1", tenant="globex")
    acme_reader = api.keys.create("acme", ["scores:read"])
    globex_reader = api.keys.create("globex", ["scores:read"])
    api.request("GET", "/v1/interviews/iv1/scorecard", acme_reader)
    api.request("GET", "/v1/interviews/gx1/scorecard", globex_reader)
    api.request("GET", "/v1/interviews", acme_reader)
    admin = api.keys.create("acme", ["admin"])

    everything = api.entries()
    assert {e["tenant"] for e in everything} == {"acme"}
    assert [e["action"] for e in everything] == ["scorecard.read", "scorecard.list"]
    assert everything[0]["seq"] < everything[1]["seq"]
    only = api.request("GET", "/v1/audit-log", admin, params={"action": "scorecard.list"})
    assert [json.loads(line)["action"] for line in only.text.splitlines()] == ["scorecard.list"]
    after = api.request("GET", "/v1/audit-log", admin, params={"since": str(everything[1]["at"])})
    assert [json.loads(line)["seq"] for line in after.text.splitlines()] == [everything[1]["seq"]]
    before = api.request("GET", "/v1/audit-log", admin, params={"until": str(everything[0]["at"])})
    assert before.text == ""
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(everything[0]["at"] - 3600))
    assert len(api.request("GET", "/v1/audit-log", admin, params={"since": hour_ago}).text.splitlines()) == 2
    table = api.request("GET", "/v1/audit-log", admin, params={"format": "csv"})
    assert table.headers["content-type"].startswith("text/csv")
    assert [r["hash"] for r in csv.DictReader(io.StringIO(table.text))] == [e["hash"] for e in everything]

    bad_time = api.request("GET", "/v1/audit-log", admin, params={"since": "last tuesday"})
    assert bad_time.status_code == 422 and bad_time.json()["error"]["code"] == "invalid_time"
    bad_action = api.request("GET", "/v1/audit-log", admin, params={"action": "scorecard.peek"})
    assert bad_action.status_code == 422 and bad_action.json()["error"]["code"] == "invalid_action"
    assert api.request("GET", "/v1/audit-log", acme_reader).status_code == 403
