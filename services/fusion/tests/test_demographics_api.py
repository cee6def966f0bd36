"""Demographics and the bias audit over REST, on a real SQLite database: values, scopes, tenants, formats."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from poise_common.auth import KeyStore
from poise_common.messages import Envelope, InterviewOpened, Question
from poise_fusion.demographics import DemographicsStore, create_demographics_router
from poise_fusion.store import FusionStore


class World:
    def __init__(self, sessions) -> None:
        self.fusion = FusionStore(sessions)
        self.keys = KeyStore(sessions)
        self.demographics = DemographicsStore(sessions)
        app = FastAPI()
        app.include_router(create_demographics_router(self.demographics, self.keys))
        self.client = TestClient(app)

    def scored(self, interview_id: str, clarity: float | None, empathy: float, tenant: str = "local",
               role: str = "generic") -> None:
        """A scored interview as fusion stores it (only what the audit reads)."""
        self.fusion.apply(Envelope(
            interview_id=interview_id, tenant=tenant, stream="control", seq=0,
            payload=InterviewOpened(role=role, questions=[Question(question_id="q1", text="Why us?")]),
        ))
        competencies = [
            {"name": "communication_clarity", "score": clarity,
             "status": "scored" if clarity is not None else "insufficient_evidence"},
            {"name": "empathy", "score": empathy, "status": "scored"},
        ]
        document = {"interview_id": interview_id, "role": role, "competencies": competencies, "answers": []}
        assert self.fusion.save_scorecard(interview_id, tenant, f"{role}@1.0+norms", document)

    def headers(self, tenant: str = "local", scopes: tuple[str, ...] = ("admin",)) -> dict:
        return {"Authorization": f"Bearer {self.keys.create(tenant, list(scopes))}"}


@pytest.fixture()
def world(sessions):
    return World(sessions)


def put(world: World, interview_id: str, body: dict, tenant: str = "local"):
    return world.client.put(f"/v1/interviews/{interview_id}/demographics", json=body,
                            headers=world.headers(tenant, ("interviews:write",)))


def test_put_stores_canonical_values_and_the_audit_counts_them(world):
    # Six scored interviews; overall = mean of the two competencies.
    people = [("f1", 40, 60, "FEMALE", "asian"), ("f2", 80, 80, "female", "White"), ("f3", 20, 40, "female", None),
              ("m1", 70, 90, "male", "White"), ("m2", 60, 80, "Male", "white"), ("u1", 50, 50, None, None)]
    for interview_id, clarity, empathy, sex, race in people:
        world.scored(interview_id, clarity, empathy)
        response = put(world, interview_id, {"sex": sex, "race_ethnicity": race})
        assert response.status_code == 200, response.text
    assert world.demographics.get("f1", "local") == {"interview_id": "f1", "sex": "female", "race_ethnicity": "Asian"}
    assert world.demographics.get("u1", "local") == {"interview_id": "u1", "sex": None, "race_ethnicity": None}
    world.scored("nodemo", 90, 90)  # scored, demographics never given: unknown in both dimensions

    response = world.client.get("/v1/audit?role=generic", headers=world.headers())
    assert response.status_code == 200, response.text
    audit = response.json()
    # Overall scores: f1 50, f2 80, f3 30, m1 80, m2 70, u1 50, nodemo 90 -> median 70; above: f2, m1, nodemo.
    assert audit["sample_size"] == 7 and audit["median"] == 70 and audit["competency"] == "overall"
    sex = {c["category"]: c for c in audit["dimensions"]["sex"]["categories"]}
    assert (sex["female"]["count"], sex["female"]["passed"]) == (3, 1)
    assert (sex["male"]["count"], sex["male"]["passed"]) == (2, 1)
    assert sex["female"]["impact_ratio"] == pytest.approx((1 / 3) / 0.5) and sex["female"]["four_fifths"]
    assert audit["dimensions"]["sex"]["unknown"] == 2
    assert audit["dimensions"]["race_ethnicity"]["unknown"] == 3
    assert audit["dimensions"]["intersectional"]["unknown"] == 3
    assert "tenant local, role generic" in audit["data_source"]

    # One competency instead: clarity 40, 80, 20, 70, 60, 50, 90 -> median 60; above: f2, m1, nodemo.
    clarity = world.client.get("/v1/audit?role=generic&competency=communication_clarity",
                               headers=world.headers()).json()
    assert clarity["median"] == 60 and clarity["competency"] == "communication_clarity"


def test_put_replaces_earlier_answers(world):
    assert put(world, "x1", {"sex": "female", "race_ethnicity": "Asian"}).status_code == 200
    assert put(world, "x1", {"sex": "decline"}).json() == {"interview_id": "x1", "sex": None, "race_ethnicity": None}
    assert world.demographics.get("x1", "local")["sex"] is None


def test_unknown_values_are_422_listing_the_allowed_ones(world):
    response = put(world, "x2", {"sex": "female", "race_ethnicity": "Martian"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_demographics" and "'Two or More Races'" in error["message"]
    assert error["allowed"]["sex"] == ["female", "male"] and "Hispanic or Latino" in error["allowed"]["race_ethnicity"]
    assert world.demographics.get("x2", "local") is None
    assert put(world, "x3", {"gender": "female"}).status_code == 422  # a misspelt field is refused, not ignored


def test_tenants_cannot_write_or_audit_each_others_interviews(world):
    world.scored("theirs", 50, 50, tenant="acme")
    assert put(world, "theirs", {"sex": "male"}).status_code == 404
    # Demographics ahead of scoring: an id nobody owns is taken by the first tenant to use it.
    assert put(world, "early", {"sex": "male"}, tenant="acme").status_code == 200
    assert put(world, "early", {"sex": "female"}).status_code == 404
    assert world.demographics.get("early", "acme")["sex"] == "male"
    assert world.demographics.get("early", "local") is None

    for n in range(4):
        world.scored(f"mine{n}", 10 * n, 10 * n)
    mine = world.client.get("/v1/audit?role=generic", headers=world.headers()).json()
    theirs = world.client.get("/v1/audit?role=generic", headers=world.headers("acme")).json()
    assert mine["sample_size"] == 4 and theirs["sample_size"] == 1


def test_the_audit_needs_the_admin_scope(world):
    world.scored("a1", 50, 50)
    for scopes in (("interviews:write",), ("scores:read",), ("interviews:write", "scores:read")):
        assert world.client.get("/v1/audit?role=generic", headers=world.headers(scopes=scopes)).status_code == 403
    assert world.client.get("/v1/audit?role=generic").status_code == 401
    assert put(world, "a1", {"sex": "male"}).status_code == 200
    no_write = world.client.put("/v1/interviews/a1/demographics", json={"sex": "male"},
                                headers=world.headers(scopes=("scores:read",)))
    assert no_write.status_code == 403


def test_formats_modes_and_refusals(world):
    for n in range(10):
        world.scored(f"s{n}", 10.0 * n, 10.0 * n)
        put(world, f"s{n}", {"sex": ("female", "male")[n % 2], "race_ethnicity": "White"})
    admin = world.headers()
    markdown = world.client.get("/v1/audit?role=generic&format=markdown", headers=admin)
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("# Bias audit: generic")
    assert "| male | 5 | 50.0% | 3 | 0.600 | 1.000 |" in markdown.text
    page = world.client.get("/v1/audit?role=generic&format=html", headers=admin)
    assert page.headers["content-type"].startswith("text/html") and "<table>" in page.text

    selected = world.client.get("/v1/audit?role=generic&mode=selection_rate&threshold=70", headers=admin).json()
    sex = {c["category"]: c for c in selected["dimensions"]["sex"]["categories"]}
    assert (sex["female"]["passed"], sex["male"]["passed"]) == (1, 2)  # 80 | 70, 90
    assert selected["threshold"] == 70

    refusals = {
        "/v1/audit?role=generic&mode=selection_rate": "needs a threshold",
        "/v1/audit?role=nobody": "the sample is empty",
        "/v1/audit?role=generic&competency=charisma": "has no competency 'charisma'",
    }
    for url, message in refusals.items():
        response = world.client.get(url, headers=admin)
        assert response.status_code == 422 and message in response.json()["error"]["message"], url
    assert world.client.get("/v1/audit?role=generic&format=pdf", headers=admin).status_code == 422
    assert world.client.get("/v1/audit?role=generic&min_share=1.5", headers=admin).status_code == 422
    assert world.client.get("/v1/audit", headers=admin).status_code == 422


def test_interviews_without_the_audited_score_are_counted_not_sampled(world):
    world.scored("c1", 40, 60)
    world.scored("c2", None, 70)  # clarity insufficient
    audit = world.client.get("/v1/audit?role=generic&competency=communication_clarity",
                             headers=world.headers()).json()
    assert audit["sample_size"] == 1 and audit["unscored"] == 1


def test_demographics_never_reach_a_log_line(world, caplog):
    caplog.set_level(logging.DEBUG)
    world.scored("p1", 50, 50)
    put(world, "p1", {"sex": "female", "race_ethnicity": "Native Hawaiian or Pacific Islander"})
    world.client.get("/v1/audit?role=generic", headers=world.headers())
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "Native Hawaiian" not in logged and "female" not in logged
