"""`poise serve`: every service in one process behind the REST API, as a team runs it."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from poise_fusion.webhooks import verify
from serve_process import poise_cli, serve

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_interview.mp4"


def test_serve_scores_an_upload_and_lists_it(tmp_path, monkeypatch):
    monkeypatch.setenv("POISE_FUSION__ALLOW_PRIVATE_TARGETS", "true")  # the webhook receiver is on 127.0.0.1
    received: list[tuple[dict, bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            received.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with serve(tmp_path / "home") as served:
        key = served.key("acme", "interviews:write,scores:read")
        admin = {"Authorization": "Bearer " + served.key("acme", "admin")}
        base = served.base
        headers = {"Authorization": f"Bearer {key}"}
        deadline = time.monotonic() + 120
        hook = httpx.post(f"{base}/v1/webhooks", headers=admin, timeout=10, json={
            "url": f"http://127.0.0.1:{receiver.server_address[1]}/poise", "events": ["interview.scored"],
        })
        assert hook.status_code == 201, hook.text
        events: list[str] = []
        listening = threading.Event()

        def listen() -> None:
            with httpx.stream("GET", f"{base}/v1/events", headers=headers, timeout=120) as stream:
                for line in stream.iter_lines():
                    listening.set()
                    events.append(line)
                    if line.startswith("data: ") and events[-2:-1] == ["event: interview.scored"]:
                        return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert listening.wait(30), "the event stream did not open"
        body = {"role": "generic", "questions": [{"question_id": "q1", "text": "Why this role?"}]}
        interview = httpx.post(f"{base}/v1/interviews", json=body, headers=headers, timeout=30).json()["interview_id"]
        with SAMPLE.open("rb") as fh:
            assert httpx.put(f"{base}/v1/interviews/{interview}/answers/q1", content=fh, headers=headers,
                             timeout=120).status_code == 200
        assert httpx.post(f"{base}/v1/interviews/{interview}/complete", headers=headers, timeout=120).status_code == 202
        while time.monotonic() < deadline + 120:
            response = httpx.get(f"{base}/v1/interviews/{interview}/scorecard", headers=headers, timeout=10)
            if response.status_code == 200:
                break
            time.sleep(0.5)
        card = response.json()
        assert card["tenant"] == "acme" and {c["name"] for c in card["competencies"]} >= {"empathy", "teamwork"}
        listed = httpx.get(f"{base}/v1/interviews", params={"status": "scored"}, headers=headers, timeout=10).json()
        assert [i["interview_id"] for i in listed["items"]] == [interview]
        assert "poise_serve_messages_consumed_total" in httpx.get(f"{base}/metrics", timeout=10).text
        anonymous = httpx.get(f"{base}/v1/interviews", timeout=10)
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthenticated"
        listener.join(30)
        assert "event: answer.scored" in events and "event: interview.scored" in events
        scored = json.loads(events[events.index("event: interview.scored") + 1].removeprefix("data: "))
        assert scored["interview_id"] == interview
        assert scored["competencies"] == {c["name"]: c["score"] for c in card["competencies"]}
        # The webhook got the same event, signed with its secret.
        while not received and time.monotonic() < deadline + 120:
            time.sleep(0.2)
        headers, body = received[0]
        assert verify(hook.json()["secret"], headers["Poise-Signature"], body)
        assert json.loads(body)["interview_id"] == interview and headers["Poise-Event"] == "interview.scored"
    receiver.shutdown()


def test_an_interview_that_cannot_be_scored_fails_visibly(tmp_path, media_dir):
    home = tmp_path / "home"
    with serve(home) as served:
        headers = {"Authorization": f"Bearer {served.key('acme', 'interviews:write,scores:read')}"}
        base = served.base
        # A role no framework defines is refused at once, never to fail later.
        body = {"role": "astronaut", "questions": [{"question_id": "q1", "text": "Why?"}]}
        unknown = httpx.post(f"{base}/v1/interviews", json=body, headers=headers, timeout=30)
        assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_role"
        assert unknown.json()["error"]["known_roles"] == ["generic", "sales-development-rep"]
        body["role"] = "generic"
        interview = httpx.post(f"{base}/v1/interviews", json=body, headers=headers, timeout=30).json()["interview_id"]
        with (media_dir / "pexels_face_20s.mp4").open("rb") as fh:
            assert httpx.put(f"{base}/v1/interviews/{interview}/answers/q1", content=fh, headers=headers,
                             timeout=120).status_code == 200
        assert httpx.post(f"{base}/v1/interviews/{interview}/complete", headers=headers, timeout=120).status_code == 202
        served.kill()  # before it is scored; published again at the next start
        before = served.log.read_text()
    assert "interview scored" not in before
    # Meanwhile the tenant's policy comes to need the candidate's consent, and none was recorded.
    poise_cli("tenants", "set-policy", "acme", "us-il", env=served.env)
    with serve(home) as served:
        status = scorecard_when_ready(served.base, interview, headers)
        listed = httpx.get(f"{served.base}/v1/interviews?status=failed", headers=headers, timeout=10).json()
        time.sleep(1.0)  # late messages of the failed interview must not bring it back
        again = httpx.get(f"{served.base}/v1/interviews/{interview}/scorecard", headers=headers, timeout=10)
    assert status.status_code == 422 and status.json()["status"] == "failed"
    error = status.json()["error"]
    assert error["code"] == "consent_required" and "needs the candidate's consent" in error["message"]
    assert [i["interview_id"] for i in listed["items"]] == [interview] and listed["next_cursor"] is None
    assert again.status_code == 422


def scorecard_when_ready(base: str, interview: str, headers: dict, seconds: float = 300) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        response = httpx.get(f"{base}/v1/interviews/{interview}/scorecard", headers=headers, timeout=10)
        if response.status_code != 202 or time.monotonic() > deadline:
            return response
        time.sleep(0.5)


def test_a_server_killed_while_scoring_delivers_the_scorecard_after_a_restart(tmp_path, media_dir):
    home = tmp_path / "home"
    with serve(home) as served:
        headers = {"Authorization": f"Bearer {served.key('acme', 'interviews:write,scores:read')}"}
        body = {"role": "generic", "questions": [{"question_id": "q1", "text": "Why this role?"}]}
        interview = httpx.post(f"{served.base}/v1/interviews", json=body, headers=headers,
                               timeout=30).json()["interview_id"]
        with (media_dir / "pexels_face_20s.mp4").open("rb") as fh:
            assert httpx.put(f"{served.base}/v1/interviews/{interview}/answers/q1", content=fh, headers=headers,
                             timeout=120).status_code == 200
        assert httpx.post(f"{served.base}/v1/interviews/{interview}/complete", headers=headers,
                          timeout=120).status_code == 202
        served.kill()  # its in-memory bus, with every message of the interview, dies with it
        before = served.log.read_text()
    assert "interview scored" not in before  # killed while scoring, as meant
    with serve(home) as served:
        card = scorecard_when_ready(served.base, interview, headers)
        again = httpx.post(f"{served.base}/v1/interviews/{interview}/complete", headers=headers, timeout=120)
        log = served.log.read_text()
    assert card.status_code == 200, card.text
    assert [a["question_id"] for a in card.json()["answers"]] == ["q1"]
    assert again.status_code == 202
    assert log.count("never scored; publishing them again") == 1


def test_an_answer_refused_at_complete_is_uploaded_again_and_the_interview_scored(tmp_path, media_dir,
                                                                                   costly_video):
    # A CPU budget for decoding that the noise video passes at its probe but not in full.
    limits = {"POISE_GATEWAY__MEDIA_CPU_S": "0.3", "POISE_GATEWAY__MEDIA_CPU_PER_MEDIA_S": "0.001"}
    with serve(tmp_path / "home", settings=limits) as served:
        headers = {"Authorization": f"Bearer {served.key('acme', 'interviews:write,scores:read')}"}
        base = served.base
        body = {"role": "generic", "questions": [{"question_id": "q1", "text": "Why this role?"},
                                                 {"question_id": "q2", "text": "And this team?"}]}
        interview = httpx.post(f"{base}/v1/interviews", json=body, headers=headers, timeout=30).json()["interview_id"]

        def upload(question_id: str, path: Path) -> int:
            with path.open("rb") as fh:
                return httpx.put(f"{base}/v1/interviews/{interview}/answers/{question_id}", content=fh,
                                 headers=headers, timeout=120).status_code

        assert upload("q1", media_dir / "single_face.mp4") == upload("q2", costly_video) == 200
        refused = httpx.post(f"{base}/v1/interviews/{interview}/complete", headers=headers, timeout=120)
        time.sleep(2.0)  # what was published before the refusal reaches fusion, and is dropped there
        pending = httpx.get(f"{base}/v1/interviews/{interview}/scorecard", headers=headers, timeout=10)
        uploaded = upload("q2", media_dir / "talking_head_3.mp4")
        done = httpx.post(f"{base}/v1/interviews/{interview}/complete", headers=headers, timeout=120)
        card = scorecard_when_ready(base, interview, headers)
    error = refused.json()["error"]
    assert refused.status_code == 422 and error["code"] == "decode_timeout" and error["question_id"] == "q2"
    assert pending.status_code == 404  # open again: nothing of it is scored, or kept, until it is completed
    assert uploaded == 200 and done.status_code == 202
    assert card.status_code == 200, card.text
    answers = card.json()["answers"]
    assert [a["question_id"] for a in answers] == ["q1", "q2"]
    assert [a["answer_id"] for a in answers] == [f"{interview}-a1-r1", f"{interview}-a2-r1"]
