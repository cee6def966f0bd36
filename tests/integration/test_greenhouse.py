"""Greenhouse Assessment Partner API on a real `poise serve`, against a local stand-in for Greenhouse."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from poise_fusion.greenhouse import DEFAULT_QUESTIONS
from serve_process import serve

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_interview.mp4"


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


def test_greenhouse_orders_scores_and_calls_back(tmp_path):
    StandIn.patches = []
    greenhouse = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=greenhouse.serve_forever, daemon=True).start()
    with serve(tmp_path / "home") as served:
        key = served.key("acme", "interviews:write,scores:read")
        other = served.key("globex", "interviews:write,scores:read")
        base = served.base
        gh = httpx.Client(base_url=f"{base}/ats/greenhouse", auth=(key, ""), timeout=30)
        bearer = {"Authorization": f"Bearer {key}"}
        tests = gh.get("/list_tests")
        assert tests.status_code == 200, tests.text
        ids = {t["partner_test_id"] for t in tests.json()}
        assert {"generic", "sales-development-rep"} <= ids
        assert all(isinstance(t["partner_test_name"], str) and t["partner_test_name"] for t in tests.json())

        callback = f"http://127.0.0.1:{greenhouse.server_address[1]}/v1/partner_callback/abc123"
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
        assert [(p, n, s) for p, n, s in StandIn.patches] == [
            ("/v1/partner_callback/abc123", 0, 500), ("/v1/partner_callback/abc123", 0, 200),
        ]

        card = httpx.get(f"{base}/v1/interviews/{interview}/scorecard", headers=bearer, timeout=30)
        assert card.status_code == 200, card.text
        scores = {c["name"]: c["score"] for c in card.json()["competencies"]}
        numbers = [s for s in scores.values() if s is not None]
        status = gh.get("/test_status", params={"partner_interview_id": interview})
        assert status.status_code == 200, status.text
        result = status.json()
        assert result["partner_status"] == "complete"
        assert result["partner_profile_url"] == f"{base}/v1/interviews/{interview}/scorecard"
        assert abs(result["partner_score"] - sum(numbers) / len(numbers)) < 0.01
        assert {k: result["metadata"][k] for k in scores} == scores
        assert result["metadata"]["model_version"] == card.json()["model_version"]
        assert result["metadata"]["policy"] == card.json()["policy"]
        assert all(v is None or isinstance(v, (str, int, float, bool)) for v in result["metadata"].values())

        # Auth: an unknown key is 401 with a Basic challenge; another tenant's key sees nothing.
        unknown = httpx.get(f"{base}/ats/greenhouse/list_tests", auth=("pk_nope_nope", ""), timeout=10)
        assert unknown.status_code == 401 and unknown.headers["www-authenticate"].lower().startswith("basic")
        assert httpx.get(f"{base}/ats/greenhouse/list_tests", timeout=10).status_code == 401
        foreign = httpx.get(f"{base}/ats/greenhouse/test_status", params={"partner_interview_id": interview},
                            auth=(other, ""), timeout=10)
        assert foreign.status_code == 404, foreign.text

        reported = gh.post("/response_error", json={
            "api_call": "test_status", "errors": ["partner_score was not a number"],
            "partner_interview_id": interview, "candidate_email": "ada@example.com",
        })
        assert reported.status_code == 200 and reported.json() == {}
        gh.close()
    greenhouse.shutdown()
    greenhouse.server_close()
    logs = served.log.read_text()
    # Personal data stays out of the logs.
    assert "ada@example.com" not in logs and "Lovelace" not in logs
