"""The Greenhouse Assessment Partner flow, run against any deployment (`poise serve`, distributed).

A local stand-in for Greenhouse records the PATCH it receives (the first one fails with 500, so
the retry is exercised); the candidate answers through the REST upload API. The stand-in listens
on 127.0.0.1, which a deployment refuses as a callback target unless it opts in: the deployment
under test gets :data:`PRIVATE_TARGETS` in its environment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from poise_fusion.greenhouse import DEFAULT_QUESTIONS

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_interview.mp4"
CALLBACK_PATH = "/v1/partner_callback/abc123"
# The opt-in of a single-host install whose receivers run beside it (here: the stand-in).
PRIVATE_TARGETS = {"POISE_FUSION__ALLOW_PRIVATE_TARGETS": "true"}


class StandIn(BaseHTTPRequestHandler):
    """Greenhouse's side of the callback: records each PATCH; the first one fails with 500."""

    patches: list[tuple[str, int, int]] = []  # (path, body bytes, status answered)

    def do_PATCH(self) -> None:  # noqa: N802 - the stdlib's name
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status = 500 if not self.patches else 200
        self.patches.append((self.path, length, status))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@contextmanager
def greenhouse_stand_in() -> Iterator[str]:
    """A stand-in Greenhouse on a free port; yields the callback URL to give send_test."""
    StandIn.patches = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{CALLBACK_PATH}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Deployment:
    ats: str  # the base URL serving /ats/greenhouse/ and the upload API
    scorecards: str  # the base URL serving GET /v1/interviews/{id}/scorecard
    profile_base: str  # what partner_profile_url must start with (the public URL)
    key: str  # interviews:write,scores:read for tenant acme
    other: str  # the same scopes for another tenant


def run_greenhouse_flow(deployment: Deployment, callback: str) -> str:
    """list_tests, send_test, the candidate's answers, the PATCH and test_status; the interview id."""
    base, key = deployment.ats, deployment.key
    gh = httpx.Client(base_url=f"{base}/ats/greenhouse", auth=(key, ""), timeout=30)
    bearer = {"Authorization": f"Bearer {key}"}
    tests = gh.get("/list_tests")
    assert tests.status_code == 200, tests.text
    ids = {t["partner_test_id"] for t in tests.json()}
    assert {"generic", "sales-development-rep"} <= ids
    assert all(isinstance(t["partner_test_name"], str) and t["partner_test_name"] for t in tests.json())

    sent = gh.post("/send_test", json={
        "partner_test_id": "generic",
        "candidate": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
                      "phone_number": None, "resume_url": None, "greenhouse_profile_url": None},
        "url": callback,
    })
    assert sent.status_code == 200, sent.text
    assert list(sent.json()) == ["partner_interview_id"]
    interview = sent.json()["partner_interview_id"]

    pending = gh.get("/test_status", params={"partner_interview_id": interview}).json()
    assert pending == {"partner_status": "in_progress", "partner_profile_url": None, "partner_score": None,
                       "metadata": {}}

    # The candidate answers through the REST upload API (same tenant, Bearer key).
    for question_id, _ in DEFAULT_QUESTIONS:
        with SAMPLE.open("rb") as fh:
            put = httpx.put(f"{base}/v1/interviews/{interview}/answers/{question_id}", content=fh,
                            headers=bearer, timeout=120)
        assert put.status_code == 200, put.text
    done = httpx.post(f"{base}/v1/interviews/{interview}/complete", headers=bearer, timeout=120)
    assert done.status_code == 202, done.text

    # Greenhouse gets PATCH (no body) at its URL; the first answer (500) is retried.
    wait = time.monotonic() + 300
    while not any(status == 200 for *_, status in StandIn.patches) and time.monotonic() < wait:
        time.sleep(0.3)
    assert StandIn.patches == [(CALLBACK_PATH, 0, 500), (CALLBACK_PATH, 0, 200)]

    card = httpx.get(f"{deployment.scorecards}/v1/interviews/{interview}/scorecard", headers=bearer, timeout=30)
    assert card.status_code == 200, card.text
    scores = {c["name"]: c.get("final_score", c["score"]) for c in card.json()["competencies"]}
    numbers = [s for s in scores.values() if s is not None]
    status = gh.get("/test_status", params={"partner_interview_id": interview})
    assert status.status_code == 200, status.text
    result = status.json()
    assert result["partner_status"] == "complete"
    # The interview's page in the dashboard, which a recruiter's browser opens (it asks for a key).
    assert result["partner_profile_url"] == f"{deployment.profile_base}/dashboard/#/interviews/{interview}"
    page = httpx.get(f"{deployment.scorecards}/dashboard/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert abs(result["partner_score"] - sum(numbers) / len(numbers)) < 0.01
    assert result["metadata"]["outcome"] == "scored"
    assert {k: result["metadata"][k] for k in scores} == scores
    assert result["metadata"]["model_version"] == card.json()["model_version"]
    assert result["metadata"]["policy"] == card.json()["policy"]
    assert all(v is None or isinstance(v, (str, int, float, bool)) for v in result["metadata"].values())

    # Auth: an unknown key is 401 with a Basic challenge; another tenant's key sees nothing.
    unknown = httpx.get(f"{base}/ats/greenhouse/list_tests", auth=("pk_nope_nope", ""), timeout=10)
    assert unknown.status_code == 401 and unknown.headers["www-authenticate"].lower().startswith("basic")
    assert httpx.get(f"{base}/ats/greenhouse/list_tests", timeout=10).status_code == 401
    foreign = httpx.get(f"{base}/ats/greenhouse/test_status", params={"partner_interview_id": interview},
                        auth=(deployment.other, ""), timeout=10)
    assert foreign.status_code == 404, foreign.text

    reported = gh.post("/response_error", json={
        "api_call": "test_status", "errors": ["partner_score was not a number"],
        "partner_interview_id": interview, "candidate_email": "ada@example.com",
    })
    assert reported.status_code == 200 and reported.json() == {}
    gh.close()
    return interview


def assert_no_candidate_data(log_text: str) -> None:
    """The candidate's name and email given to send_test never reach a log."""
    assert "ada@example.com" not in log_text and "Lovelace" not in log_text
