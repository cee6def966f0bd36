"""Reviewers' overrides over a real SQLite store: the original kept, final scores served by REST, gRPC and
Greenhouse alike, history, tenants, scopes and refusals."""

from __future__ import annotations

import asyncio
import copy
import logging

import grpc
import httpx
import pytest
from fastapi import FastAPI

from poise_common.auth import KeyStore
from poise_common.grpc_api.poise.v1 import scoring_pb2 as pb
from poise_common.grpc_api.poise.v1 import scoring_pb2_grpc as pb_grpc
from poise_common.grpc_api.server import GrpcServer, ScoringServicer
from poise_common.messages import Envelope, InterviewOpened, Question
from poise_common.settings import PoiseSettings
from poise_fusion.api import create_router
from poise_fusion.greenhouse import Candidate, GreenhouseStore, create_greenhouse_router
from poise_fusion.overrides import OverrideStore, create_override_router
from poise_fusion.store import FusionStore

CLARITY = {
    "name": "communication_clarity", "label": "Communication clarity", "score": 62.5, "band": "strong",
    "status": "scored",
    "contributions": [
        {"feature": "nlp.filler_rate", "behaviour": "fluent", "modality": "content", "value": 2.0,
         "normalised": 0.8, "weight": 2, "points": 40.0},
        {"feature": "audio.pause_ratio", "behaviour": "fluent", "modality": "voice", "value": 0.4,
         "normalised": 0.45, "weight": 2, "points": 22.5},
    ],
    "evidence": [],
}
EMPATHY = {"name": "empathy", "label": "Empathy", "score": None, "band": "insufficient_evidence",
           "status": "insufficient_evidence", "contributions": [], "evidence": []}
SCORECARD = {"interview_id": "iv1", "tenant": "local", "role": "generic", "model_version": "generic@1.0+norms",
             "policy": "default", "competencies": [CLARITY, EMPATHY], "answers": [], "warnings": []}
REASON = "The answer to q2 was cut off by a network drop; the recording shows a clear, fluent answer."


def opened(interview_id: str, tenant: str = "local") -> Envelope:
    return Envelope(
        interview_id=interview_id, tenant=tenant, stream="control", seq=0,
        payload=InterviewOpened(role="generic", questions=[Question(question_id="q1", text="Why us?")]),
    )


class Deployment:
    """The REST routes (scorecard, overrides, Greenhouse) and the gRPC service on one database."""

    def __init__(self, sessions) -> None:
        self.store, self.keys = FusionStore(sessions), KeyStore(sessions)
        self.greenhouse = GreenhouseStore(sessions)
        self.app = FastAPI()

        async def no_orders(*args) -> str:  # opens (and so discards) nothing
            raise AssertionError("these tests order no Greenhouse test")

        self.app.include_router(create_router(self.store, PoiseSettings(), self.keys))
        self.app.include_router(create_override_router(OverrideStore(sessions), self.keys))
        self.app.include_router(create_greenhouse_router(
            self.greenhouse, self.store, self.keys, no_orders, public_base_url="http://poise.test",
            invitation_link=lambda interview_id, tenant: f"http://poise.test/candidate/{interview_id}",
            discard_interview=no_orders,
        ))

    def key(self, tenant: str = "local", *scopes: str) -> str:
        return self.keys.create(tenant, list(scopes or ("scores:read",)))

    def request(self, method: str, path: str, key: str, body: dict | None = None, basic: bool = False) -> httpx.Response:
        async def scenario() -> httpx.Response:
            auth = httpx.BasicAuth(key, "") if basic else None
            headers = {} if basic else {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://fusion",
                                         headers=headers, auth=auth) as client:
                return await client.request(method, path, json=body)

        return asyncio.run(scenario())

    def override(self, key: str, body: dict, interview_id: str = "iv1") -> httpx.Response:
        return self.request("POST", f"/v1/interviews/{interview_id}/overrides", key, body)

    def grpc_scorecard(self, key: str, interview_id: str = "iv1") -> pb.GetScorecardResponse:
        async def scenario() -> pb.GetScorecardResponse:
            server = GrpcServer(ScoringServicer(self.keys, store=self.store), "127.0.0.1", 0, grace_s=0)
            await server.start()
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                    stub = pb_grpc.ScoringServiceStub(channel)
                    return await stub.GetScorecard(pb.GetScorecardRequest(interview_id=interview_id),
                                                   metadata=(("authorization", f"Bearer {key}"),), timeout=10)
            finally:
                await server.stop()

        return asyncio.run(scenario())


@pytest.fixture()
def deployment(sessions):
    return Deployment(sessions)


@pytest.fixture()
def scored(deployment):
    deployment.store.apply(opened("iv1"))
    assert deployment.store.save_scorecard("iv1", "local", "generic@1.0+norms", copy.deepcopy(SCORECARD))
    return deployment


def by_name(document: dict) -> dict[str, dict]:
    return {c["name"]: c for c in document["competencies"]}


def test_an_override_sets_the_final_score_and_keeps_the_models(scored, caplog):
    reviewer = scored.key("local", "scores:review")
    reader = scored.key()
    before = scored.request("GET", "/v1/interviews/iv1/scorecard", reader).json()
    with caplog.at_level(logging.INFO, logger="poise_fusion.overrides"):
        created = scored.override(reviewer, {"competency": "communication_clarity", "score": 80, "reason": REASON})
    after = scored.request("GET", "/v1/interviews/iv1/scorecard", reader).json()

    assert created.status_code == 201
    stored = created.json()
    assert (stored["competency"], stored["original_score"], stored["score"], stored["reason"]) == (
        "communication_clarity", 62.5, 80.0, REASON)
    assert stored["reviewer"] == reviewer.split("_")[1]  # the key's id, never the key

    assert before["reviewed"] is False and by_name(before)["communication_clarity"]["final_score"] == 62.5
    assert after["reviewed"] is True
    clarity = by_name(after)["communication_clarity"]
    assert clarity["score"] == 62.5 and clarity["contributions"] == CLARITY["contributions"]  # the model's, as it was
    assert clarity["final_score"] == 80.0
    assert clarity["override"] == {"score": 80.0, "reason": REASON, "reviewer": stored["reviewer"],
                                   "at": stored["created_at"]}
    assert by_name(after)["empathy"]["final_score"] is None and by_name(after)["empathy"]["override"] is None
    # The stored document itself is never rewritten.
    assert scored.store.scorecard("iv1") == SCORECARD
    # Logged as made, without the reason (it may quote the candidate).
    [record] = [r for r in caplog.records if r.getMessage() == "score override recorded"]
    assert record.competency == "communication_clarity" and REASON not in str(vars(record))


def test_the_latest_override_applies_and_the_history_keeps_every_one(scored):
    reviewer = scored.key("local", "scores:review")
    first = scored.override(reviewer, {"competency": "communication_clarity", "score": 80, "reason": "first look"})
    second = scored.override(reviewer, {"competency": "communication_clarity", "score": 55.5, "reason": "second look"})
    empathy = scored.override(reviewer, {"competency": "empathy", "score": 70, "reason": "seen in the recording"})
    assert first.status_code == second.status_code == empathy.status_code == 201
    # Every override keeps the model's score, not the previous override's.
    assert second.json()["original_score"] == 62.5 and empathy.json()["original_score"] is None

    history = scored.request("GET", "/v1/interviews/iv1/overrides", scored.key()).json()["items"]
    assert [(o["competency"], o["score"], o["reason"]) for o in history] == [
        ("communication_clarity", 80.0, "first look"),
        ("communication_clarity", 55.5, "second look"),
        ("empathy", 70.0, "seen in the recording"),
    ]
    card = by_name(scored.request("GET", "/v1/interviews/iv1/scorecard", scored.key()).json())
    assert card["communication_clarity"]["final_score"] == 55.5
    assert card["communication_clarity"]["override"]["reason"] == "second look"
    assert (card["empathy"]["score"], card["empathy"]["final_score"]) == (None, 70.0)


def test_grpc_and_greenhouse_serve_the_reviewed_scorecard(scored):
    reviewer, reader = scored.key("local", "scores:review"), scored.key()
    scored.greenhouse.add("iv1", "local", "generic", Candidate(), "https://greenhouse.test/callback", "http://x/c")
    assert scored.override(reviewer, {"competency": "empathy", "score": 90, "reason": REASON}).status_code == 201

    rest = scored.request("GET", "/v1/interviews/iv1/scorecard", reader)
    assert scored.grpc_scorecard(reader).scorecard_json == rest.text  # the same document, byte for byte

    status = scored.request("GET", "/ats/greenhouse/test_status?partner_interview_id=iv1", reader, basic=True)
    assert status.status_code == 200, status.text
    result = status.json()
    assert result["metadata"]["empathy"] == 90.0 and result["metadata"]["communication_clarity"] == 62.5
    assert result["metadata"]["reviewed"] is True
    assert result["partner_score"] == pytest.approx((90.0 + 62.5) / 2, abs=0.01)


def test_another_tenants_or_an_unknown_interview_is_404(scored):
    theirs = scored.key("acme", "scores:review")
    body = {"competency": "communication_clarity", "score": 10, "reason": "not mine"}
    assert scored.override(theirs, body).status_code == 404
    assert scored.override(theirs, body).json()["error"]["code"] == "not_found"
    assert scored.request("GET", "/v1/interviews/iv1/overrides", scored.key("acme")).status_code == 404
    assert scored.override(scored.key("local", "scores:review"), body, interview_id="nope").status_code == 404
    assert scored.request("GET", "/v1/interviews/iv1/overrides", scored.key()).json() == {"items": []}


def test_overriding_needs_the_review_scope(scored):
    body = {"competency": "communication_clarity", "score": 10, "reason": "why"}
    assert scored.override(scored.key("local", "scores:read"), body).status_code == 403
    assert scored.override(scored.key("local", "interviews:write"), body).status_code == 403
    assert scored.override("pk_0000_nope", body).status_code == 401
    assert scored.override(scored.key("local", "admin"), body).status_code == 201


def test_an_interview_that_is_not_scored_is_409(deployment):
    reviewer = deployment.key("local", "scores:review")
    body = {"competency": "communication_clarity", "score": 10, "reason": "too early"}
    deployment.store.apply(opened("iv2"))
    processing = deployment.override(reviewer, body, interview_id="iv2")
    deployment.store.apply(opened("iv3"))
    deployment.store.discard_interview("iv3", "local", "the audio stage could not process this interview")
    failed = deployment.override(reviewer, body, interview_id="iv3")
    assert processing.status_code == failed.status_code == 409
    assert processing.json()["error"]["code"] == "not_scored"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"competency": "charisma", "score": 50, "reason": "r"}, "unknown_competency"),
        ({"competency": "empathy", "score": 100.5, "reason": "r"}, None),
        ({"competency": "empathy", "score": -1, "reason": "r"}, None),
        ({"competency": "empathy", "score": "high", "reason": "r"}, None),
        ({"competency": "empathy", "score": 50, "reason": "   "}, None),
        ({"competency": "empathy", "score": 50, "reason": "x" * 2001}, None),
        ({"competency": "empathy", "score": 50}, None),
    ],
)
def test_bad_overrides_are_422_and_nothing_is_stored(scored, body, code):
    response = scored.override(scored.key("local", "scores:review"), body)
    assert response.status_code == 422
    if code:
        assert response.json()["error"]["code"] == code
    assert scored.request("GET", "/v1/interviews/iv1/overrides", scored.key()).json() == {"items": []}


def test_limits_are_inclusive(scored):
    reviewer = scored.key("local", "scores:review")
    for score, reason in ((0, "x" * 2000), (100, "fine")):
        assert scored.override(reviewer, {"competency": "empathy", "score": score, "reason": reason}).status_code == 201
