"""No personal data in logs or metrics: a full run through `poise serve` at DEBUG level (an interview
with the caller's candidate reference, and a Greenhouse order with the candidate's name and email),
then the server's log, its /metrics and the audit log are searched for any of it and for the
transcripts' wording."""

from __future__ import annotations

import re
import time
import uuid

import httpx

from greenhouse_flow import PRIVATE_TARGETS, SAMPLE, Deployment, greenhouse_stand_in, run_greenhouse_flow
from serve_process import serve

CANDIDATE_REF = "cand-Quintessa-Marlowe-4471"
# What run_greenhouse_flow gives send_test.
NAME, EMAIL = ("Ada", "Lovelace"), "ada@example.com"
RUN = 4  # a transcript's words, this many in a row, found in a log would be the transcript leaking


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def runs(tokens: list[str]) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + RUN]) for i in range(len(tokens) - RUN + 1)}


def transcript_runs(card: dict) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for answer in card["answers"]:
        for segment in answer["transcript"]:
            found |= runs(words(segment["text"]))
    return found


def leaks(text: str, transcripts: set[tuple[str, ...]]) -> list[str]:
    """Every piece of the candidates' data found in ``text``."""
    found = [value for value in (CANDIDATE_REF, EMAIL, NAME[1]) if value.lower() in text.lower()]
    found += [NAME[0]] if re.search(rf"\b{NAME[0]}\b", text) else []
    found += [" ".join(run) for run in sorted(runs(words(text)) & transcripts)]
    return found


def wait_scorecard(base: str, interview_id: str, headers: dict) -> dict:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        response = httpx.get(f"{base}/v1/interviews/{interview_id}/scorecard", headers=headers, timeout=10)
        if response.status_code == 200:
            return response.json()
        assert response.status_code == 202, response.text
        time.sleep(0.5)
    raise AssertionError("the interview was not scored in time")


def test_logs_metrics_and_the_audit_log_of_a_full_run_hold_no_candidate_data(tmp_path, monkeypatch):
    monkeypatch.setenv("POISE_LOG_LEVEL", "DEBUG")
    for name, value in PRIVATE_TARGETS.items():  # the stand-in Greenhouse runs on 127.0.0.1
        monkeypatch.setenv(name, value)
    with greenhouse_stand_in() as callback, serve(tmp_path / "home") as served:
        key = served.key("acme", "interviews:write,scores:read")
        headers = {"Authorization": f"Bearer {key}"}
        admin = {"Authorization": f"Bearer {served.key('acme', 'admin')}"}
        base = served.base
        created = httpx.post(f"{base}/v1/interviews", headers=headers, timeout=30, json={
            "role": "generic", "candidate_ref": CANDIDATE_REF,
            "questions": [{"question_id": "q1", "text": "Why this role?"}],
        })
        assert created.status_code == 201, created.text
        interview_id = created.json()["interview_id"]
        with SAMPLE.open("rb") as fh:
            put = httpx.put(f"{base}/v1/interviews/{interview_id}/answers/q1", content=fh, headers=headers,
                            timeout=120)
        assert put.status_code == 200, put.text
        assert httpx.post(f"{base}/v1/interviews/{interview_id}/complete", headers=headers,
                          timeout=120).status_code == 202

        other = served.key("globex", "interviews:write,scores:read")
        ordered = run_greenhouse_flow(Deployment(base, base, base, key, other), callback)
        cards = [wait_scorecard(base, i, headers) for i in (interview_id, ordered)]
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        audit_log = httpx.get(f"{base}/v1/audit-log", headers=admin, timeout=30)
        assert audit_log.status_code == 200, audit_log.text

    log = served.log.read_text()
    transcripts = set().union(*(transcript_runs(card) for card in cards))
    # The check means something only if there was speech to leak, and DEBUG lines were written.
    assert len(transcripts) >= 10, transcripts
    assert " DEBUG " in log
    assert {"interview.create", "scorecard.read", "interview.scored"} <= {
        line.split('"action":"')[1].split('"')[0] for line in audit_log.text.splitlines()}
    for where, text in (("the server log", log), ("/metrics", metrics), ("the audit log", audit_log.text)):
        assert leaks(text, transcripts) == [], f"candidate data in {where}"


def test_a_database_error_on_a_route_logs_its_kind_not_the_candidate(postgres, tmp_path, monkeypatch):
    """A Greenhouse order whose candidate name is longer than the column holds fails on PostgreSQL
    (SQLSTATE 22001) inside the insert that also carries the email and the candidate's link: the
    log names the error, never those values."""
    monkeypatch.setenv("POISE_DATABASE_URL", postgres.create_database(f"pii_{uuid.uuid4().hex[:8]}"))
    first, last, email = "Janet", "Quintessa" * 28, "janet.q@example.com"  # joined: 258 characters, column: 256
    with serve(tmp_path / "home") as served:
        key = served.key("acme", "interviews:write")
        response = httpx.post(f"{served.base}/ats/greenhouse/send_test", auth=(key, ""), timeout=60, json={
            "partner_test_id": "generic", "url": "https://93.184.215.14/greenhouse/callback",
            "candidate": {"first_name": first, "last_name": last, "email": email},
        })
        assert response.status_code == 500, response.text
    log = served.log.read_text()
    assert "DataError (22001)" in log, log[-3000:]  # the failure itself is logged, by its kind
    for value in (first, last[:20], email, "INSERT", "/candidate/"):
        assert value not in log, f"{value!r} in the server log"
