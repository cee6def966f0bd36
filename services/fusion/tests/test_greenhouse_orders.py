"""Greenhouse partner routes and callback: what an order refuses, all-or-nothing orders, failed and
evidence-less interviews as Greenhouse sees them, on a real database, upload desk and HTTP stand-in."""

from __future__ import annotations

import asyncio
import base64
import time

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from poise_common.auth import KeyStore
from poise_common.bus.memory import MemoryBus
from poise_common.db.models import GreenhouseTest
from poise_common.messages import Envelope, ScoreEvent, Topics
from poise_common.settings import GatewaySettings
from poise_devstack.recorder import RecordingServer
from poise_fusion.dashboard import create_dashboard_router
from poise_fusion.greenhouse import (
    Candidate, GreenhouseNotifier, GreenhouseStore, create_greenhouse_router, is_email_address, status_of,
)
from poise_fusion.framework import FrameworkError, get_framework
from poise_fusion.policy import TenantPolicyStore
from poise_fusion.store import FusionStore
from poise_gateway.api import NewInterview, UploadDesk

BASE = "https://poise.example.com"
CANDIDATE = {"first_name": "Janet", "last_name": "Quill", "email": "janet.quill@example.com", "phone_number": None,
             "resume_url": None, "greenhouse_profile_url": None}
ORDER = {"partner_test_id": "generic", "candidate": CANDIDATE,
         "url": "https://app.greenhouse.io/v1/partner_callback/abc123"}


class Partner:
    """The partner routes (and the dashboard) over a real database and upload desk."""

    def __init__(self, sessions, media, *, allow_private_targets: bool = False) -> None:
        self.sessions = sessions
        self.keys = KeyStore(sessions)
        self.tests = GreenhouseStore(sessions)
        self.desk = UploadDesk(media, None, GatewaySettings(), default_role="generic")
        self.desk.prepare()

        async def open_interview(role: str, questions: list[dict], tenant: str) -> str:
            return await self.desk.create(NewInterview(role=role, questions=questions), tenant)

        self.app = FastAPI()
        self.app.include_router(create_greenhouse_router(
            self.tests, FusionStore(sessions), self.keys, open_interview, public_base_url=BASE,
            invitation_link=lambda interview_id, tenant: f"{BASE}/candidate/{interview_id}?t=x",
            discard_interview=self.desk.erase, allow_private_targets=allow_private_targets,
        ))
        self.app.include_router(create_dashboard_router(self.keys))

    def basic(self, scopes: str = "interviews:write,scores:read") -> dict:
        token = base64.b64encode(f"{self.keys.create('acme', scopes.split(','))}:".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        async def go() -> httpx.Response:
            # An exception in the app is its 500, as a server would answer it.
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://poise") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(go())

    def order(self, body: dict) -> httpx.Response:
        return self.call("POST", "/ats/greenhouse/send_test", json=body, headers=self.basic())

    def orders(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(GreenhouseTest))


@pytest.fixture()
def partner(sessions, tmp_path):
    return Partner(sessions, tmp_path / "media")


async def notify(store: GreenhouseStore, events: list[Envelope], until, *, allow_private: bool) -> None:
    bus = MemoryBus()
    await bus.start()
    notifier = GreenhouseNotifier(bus, store, backoff_s=0.05, poll_s=0.05, allow_private=allow_private)
    await notifier.start()
    for env in events:
        await bus.publish(Topics.SCORECARDS, env)
    deadline = time.monotonic() + 30
    while not until() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await notifier.stop()
    await bus.stop()


def callback_of(sessions, interview_id: str) -> GreenhouseTest:
    with sessions() as session:
        return session.get(GreenhouseTest, interview_id)


# -- what send_test refuses ---------------------------------------------------------------------
@pytest.mark.parametrize(("url", "kind"), [
    ("http://127.0.0.1:8000/v1/interviews", "loopback"),
    ("http://localhost:8000/metrics", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://192.168.1.1/admin", "private"),
    ("http://0.0.0.0:8000/", "unspecified"),
])
def test_a_callback_url_on_a_non_public_address_is_a_422_and_opens_nothing(partner, url, kind):
    response = partner.order({**ORDER, "url": url})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "url"] and f"a {kind} address" in error["msg"]
    assert partner.desk.folder_ids() == [] and partner.orders() == 0


def test_a_private_callback_url_is_taken_where_the_deployment_allows_it(sessions, tmp_path):
    partner = Partner(sessions, tmp_path / "media", allow_private_targets=True)
    response = partner.order({**ORDER, "url": "http://127.0.0.1:9/callback"})
    assert response.status_code == 200, response.text
    assert partner.desk.folder_ids() == [response.json()["partner_interview_id"]] and partner.orders() == 1


@pytest.mark.parametrize("email", ["janet.q@", "jane@[1.2.3", "@example.com", "janet", "jane@localhost",
                                   "jane doe@example.com", "a@b.com, c@d.com", "Jane <jane@example.com>",
                                   "jane@example.com\nBcc: x@example.com", "jane@-example.com", "jane..q@example.com"])
def test_a_malformed_candidate_email_is_a_422_and_opens_nothing(partner, email):
    response = partner.order({**ORDER, "candidate": {**CANDIDATE, "email": email}})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "candidate", "email"] and "email must be one address" in error["msg"]
    assert partner.desk.folder_ids() == [] and partner.orders() == 0


def test_ordinary_email_addresses_are_taken():
    for email in ("janet.quill@example.com", "o'brien+jobs@mail.example.co.uk", "j_q-1@sub.example-mail.io"):
        assert is_email_address(email), email
    assert Candidate(email=None).email is None  # an order without an address: no email is sent


def test_when_the_order_cannot_be_stored_the_interview_just_opened_is_removed(partner):
    with partner.sessions.begin() as session:  # the database refuses every new order
        session.execute(text("CREATE TRIGGER refuse_orders BEFORE INSERT ON greenhouse_tests "
                             "BEGIN SELECT RAISE(ABORT, 'no room for this order'); END"))
    response = partner.order(ORDER)
    assert response.status_code == 500
    assert partner.desk.folder_ids() == [] and partner.orders() == 0
    with partner.sessions.begin() as session:
        session.execute(text("DROP TRIGGER refuse_orders"))
    assert partner.order(ORDER).status_code == 200  # the same order, once it can be kept
    assert len(partner.desk.folder_ids()) == 1 and partner.orders() == 1


# -- results ------------------------------------------------------------------------------------
def test_a_failed_interview_is_final_for_greenhouse_with_a_reason_and_the_patch_is_sent(partner):
    stand_in = RecordingServer()  # Greenhouse's callback endpoint
    callback = stand_in.url("/v1/partner_callback/abc123")
    assert partner.order({**ORDER, "url": callback}).status_code == 422  # loopback: refused by default ...
    partner = Partner(partner.sessions, partner.desk.root, allow_private_targets=True)  # ... taken when allowed
    interview_id = partner.order({**ORDER, "url": callback}).json()["partner_interview_id"]
    query = {"partner_interview_id": interview_id}
    before = partner.call("GET", "/ats/greenhouse/test_status", params=query, headers=partner.basic()).json()
    assert before["partner_status"] == "in_progress"

    # Fusion fails it: a us-il tenant's interview without the candidate's consent.
    refusal = TenantPolicyStore(partner.sessions, "us-il").resolve("acme").consent_refusal(None)
    FusionStore(partner.sessions).discard_interview(interview_id, "acme", refusal)
    failed = Envelope(interview_id=interview_id, tenant="acme", stream="score", seq=0,
                      payload=ScoreEvent(type="interview.failed", error=refusal))
    asyncio.run(notify(partner.tests, [failed], lambda: stand_in.requests != [] and
                       callback_of(partner.sessions, interview_id).callback_status == "delivered", allow_private=True))
    stand_in.close()
    assert [(r.method, r.path, r.body) for r in stand_in.requests] == [("PATCH", "/v1/partner_callback/abc123", b"")]

    status = partner.call("GET", "/ats/greenhouse/test_status", params=query, headers=partner.basic())
    assert status.status_code == 200, status.text
    assert status.json() == {
        "partner_status": "complete", "partner_score": None,
        "partner_profile_url": f"{BASE}/dashboard/#/interviews/{interview_id}",
        "metadata": {"outcome": "not_scored", "reason": "consent_required"},
    }
    # The profile URL is a page a browser opens (the dashboard asks for a key), not a 401.
    page = partner.call("GET", "/dashboard/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_an_interview_whose_role_cannot_be_scored_is_not_scorable_and_names_no_one(partner):
    interview_id = partner.order(ORDER).json()["partner_interview_id"]
    with pytest.raises(FrameworkError) as unusable:
        get_framework("astronaut")
    FusionStore(partner.sessions).discard_interview(interview_id, "acme", str(unusable.value))
    status = partner.call("GET", "/ats/greenhouse/test_status", params={"partner_interview_id": interview_id},
                          headers=partner.basic()).json()
    assert status["partner_status"] == "complete" and status["partner_score"] is None
    assert status["metadata"] == {"outcome": "not_scored", "reason": "not_scorable"}
    assert not {"Janet", "Quill", CANDIDATE["email"]} & {str(v) for v in status.values()}


@pytest.mark.parametrize(("host", "refusal"), [("localhost", "resolves to a loopback"),
                                               ("169.254.169.254", "is a link-local")])
def test_a_callback_to_a_non_public_address_when_due_is_refused_and_not_retried(sessions, host, refusal):
    stand_in = RecordingServer()
    store = GreenhouseStore(sessions)
    # Taken when ordered (the name resolved elsewhere then, or the deployment allowed it).
    store.add("iv1", "acme", "generic", Candidate(), f"http://{host}:{stand_in.port}/cb", f"{BASE}/candidate/iv1")
    scored = Envelope(interview_id="iv1", tenant="acme", stream="score", seq=0,
                      payload=ScoreEvent(type="interview.scored", scorecard={"competencies": []}))
    asyncio.run(notify(store, [scored], lambda: callback_of(sessions, "iv1").callback_status in ("failed", "delivered"),
                       allow_private=False))
    time.sleep(0.2)
    stand_in.close()
    row = callback_of(sessions, "iv1")
    assert row.callback_status == "failed" and row.callback_attempts == 1 and row.next_attempt_at is None
    assert row.last_error.startswith(f"refused: its host {refusal} address")
    assert stand_in.requests == []


def test_when_no_competency_had_evidence_the_metadata_says_so():
    insufficient = {"model_version": "generic@1", "policy": "eu", "reviewed": False, "competencies": [
        {"name": "empathy", "score": None, "final_score": None},
        {"name": "teamwork", "score": None, "final_score": None},
    ]}
    status = status_of(insufficient, f"{BASE}/dashboard/#/interviews/iv1")
    assert status.partner_status == "complete" and status.partner_score is None
    assert status.metadata["outcome"] == "insufficient_evidence"
    assert status.metadata["empathy"] is None and status.metadata["teamwork"] is None
    # A reviewer's score for one competency makes it a scored test.
    reviewed = {**insufficient, "reviewed": True, "competencies": [
        {"name": "empathy", "score": None, "final_score": 70.0},
        {"name": "teamwork", "score": None, "final_score": None},
    ]}
    status = status_of(reviewed, f"{BASE}/dashboard/#/interviews/iv1")
    assert status.partner_score == 70.0 and status.metadata["outcome"] == "scored"
