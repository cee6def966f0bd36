"""The audit log on a real SQLite file: the chain, tampering found where it happened, concurrent
writers (threads and processes), pruning with a checkpoint, and export."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from poise_common.audit_trail import (
    GENESIS,
    AuditTrail,
    AuditUnavailable,
    csv_lines,
    entries,
    jsonl_lines,
    prune,
    verify,
)
from poise_common.db.engine import create_db_engine, session_factory, upgrade

WRITER = Path(__file__).with_name("audit_writer.py")


@pytest.fixture()
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    engine = create_db_engine(url)
    upgrade(engine)
    yield url, session_factory(engine), engine
    engine.dispose()


def rows(engine) -> list[dict]:
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(text("SELECT * FROM audit_events ORDER BY seq"))]


def fill(trail: AuditTrail, count: int) -> None:
    for i in range(count):
        trail.record(tenant="acme", actor="key1", action="scorecard.read", interview_id=f"iv{i}",
                     detail={"via": "rest", "n": i})


def test_entries_form_the_documented_chain(db):
    _, sessions, engine = db
    trail = AuditTrail(sessions)
    fill(trail, 4)
    trail.record(tenant="globex", actor="system", action="interview.scored", interview_id="iv9",
                 detail={"model_version": "generic@1.0+norms", "weights": (1, 2.5)})
    stored = rows(engine)
    assert [r["seq"] for r in stored] == [1, 2, 3, 4, 5]
    assert stored[0]["prev_hash"] == GENESIS
    previous = GENESIS
    for row in stored:
        detail = json.loads(row["detail"]) if row["detail"] is not None else None
        body = json.dumps([row["seq"], row["at"], row["tenant"], row["actor"], row["action"], row["interview_id"],
                           detail], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert row["prev_hash"] == previous
        assert row["hash"] == hashlib.sha256((previous + body).encode()).hexdigest()
        previous = row["hash"]
    result = verify(sessions)
    assert (result.ok, result.entries, result.first_bad_seq) == (True, 5, None)
    assert (result.head_seq, result.head_hash) == (5, stored[-1]["hash"])


def test_detail_with_personal_data_and_unknown_actions_are_refused(db):
    _, sessions, engine = db
    trail = AuditTrail(sessions)
    with pytest.raises(ValueError, match="email"):
        trail.record(tenant="acme", actor="key1", action="interview.create", detail={"email": "a@example.com"})
    with pytest.raises(ValueError, match="unknown audit action"):
        trail.record(tenant="acme", actor="key1", action="scorecard.peek")
    assert rows(engine) == []


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        # A changed detail: the entry's own hash no longer matches.
        ("UPDATE audit_events SET detail = '{\"n\": 99, \"via\": \"rest\"}' WHERE seq = 3", 3),
        # A changed actor, and a changed time.
        ("UPDATE audit_events SET actor = 'someone' WHERE seq = 4", 4),
        ("UPDATE audit_events SET at = at - 86400 WHERE seq = 5", 5),
        # A removed entry.
        ("DELETE FROM audit_events WHERE seq = 3", 3),
        # Two entries swapped (by way of a free seq: SQLite checks the key row by row).
        ("UPDATE audit_events SET seq = -2 WHERE seq = 2; UPDATE audit_events SET seq = 2 WHERE seq = 5; "
         "UPDATE audit_events SET seq = 5 WHERE seq = -2", 2),
        # The oldest entries removed, without a prune checkpoint.
        ("DELETE FROM audit_events WHERE seq <= 2", 3),
    ],
)
def test_tampering_is_found_at_the_first_bad_entry(db, tamper, first_bad):
    _, sessions, engine = db
    fill(AuditTrail(sessions), 6)
    assert verify(sessions).ok
    with engine.begin() as connection:
        for statement in tamper.split("; "):
            connection.execute(text(statement))
    result = verify(sessions)
    assert not result.ok and result.first_bad_seq == first_bad, result


def test_a_rehashed_edit_breaks_the_link_of_the_next_entry(db):
    _, sessions, engine = db
    fill(AuditTrail(sessions), 5)
    row = rows(engine)[1]
    forged = hashlib.sha256((row["prev_hash"] + "forged").encode()).hexdigest()
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET hash = :h WHERE seq = 2"), {"h": forged})
    result = verify(sessions)
    assert (result.ok, result.first_bad_seq) == (False, 2)


def test_threads_appending_at_once_never_fork_the_chain(db):
    url, sessions, engine = db
    # Two trails on two engines, as two workers of one process would have, eight threads each.
    other_engine = create_db_engine(url)
    trails = [AuditTrail(sessions), AuditTrail(session_factory(other_engine))]
    start = threading.Barrier(16)

    def write(trail: AuditTrail, n: int) -> None:
        start.wait()
        for i in range(15):
            trail.record(tenant="acme", actor=f"t{n}", action="scorecard.read", detail={"i": i})

    threads = [threading.Thread(target=write, args=(trails[n % 2], n)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other_engine.dispose()
    stored = rows(engine)
    assert [r["seq"] for r in stored] == list(range(1, 241))
    result = verify(sessions)
    assert (result.ok, result.entries) == (True, 240)


def test_two_processes_appending_to_one_sqlite_file_never_fork_the_chain(db, tmp_path):
    url, sessions, engine = db
    go = tmp_path / "go"
    writers = [
        subprocess.Popen([sys.executable, str(WRITER), url, actor, "150", str(go)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for actor in ("p1", "p2")
    ]
    for writer in writers:
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
    go.touch()
    for writer in writers:
        _, errors = writer.communicate(timeout=300)
        assert writer.returncode == 0, errors
    stored = rows(engine)
    assert len(stored) == 300 and verify(sessions).ok
    actors = [r["actor"] for r in stored]
    assert actors.count("p1") == actors.count("p2") == 150
    # The writers really overlapped: the chain switches between them more than once.
    assert sum(a != b for a, b in zip(actors, actors[1:])) >= 2


def test_an_entry_that_cannot_be_written_refuses_the_access(db):
    _, sessions, engine = db
    trail = AuditTrail(sessions)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE audit_events"))
    with pytest.raises(AuditUnavailable) as caught:
        asyncio.run(trail.record_async(tenant="acme", actor="key1", action="scorecard.read", interview_id="iv1"))
    assert caught.value.status_code == 503 and caught.value.detail["code"] == "audit_unavailable"


def test_prune_removes_only_old_entries_from_the_start_and_leaves_a_checkpoint(db):
    _, sessions, engine = db
    trail = AuditTrail(sessions)
    fill(trail, 2)
    time.sleep(0.01)
    fill(trail, 2)
    before = rows(engine)
    with pytest.raises(ValueError, match="183"):
        prune(sessions, keep_days=90, actor="cli:ops")
    assert prune(sessions, keep_days=183, actor="cli:ops").pruned == 0  # nothing that old
    # Seen 183 days after the third entry: the first two are older than the kept period.
    result = prune(sessions, keep_days=183, actor="cli:ops", now=before[2]["at"] + 183 * 86400)
    assert (result.pruned, result.through_seq, result.checkpoint_seq) == (2, 2, 5)
    kept = rows(engine)
    assert [r["seq"] for r in kept] == [3, 4, 5]
    checkpoint = kept[-1]
    assert (checkpoint["action"], checkpoint["tenant"], checkpoint["actor"]) == ("audit_log.prune", "*", "cli:ops")
    detail = json.loads(checkpoint["detail"])
    assert detail["continues_from"] == before[1]["hash"] == kept[0]["prev_hash"]
    assert detail["pruned_through_seq"] == 2 and detail["pruned"] == 2
    trail.record(tenant="acme", actor="key1", action="scorecard.list")
    assert (verify(sessions).ok, verify(sessions).entries) == (True, 4)
    # Removing the oldest kept entry is not covered by the checkpoint.
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_events WHERE seq = 3"))
    assert verify(sessions).first_bad_seq == 4


def test_prune_of_every_entry_keeps_a_verifiable_chain(db):
    _, sessions, engine = db
    trail = AuditTrail(sessions)
    fill(trail, 3)
    result = prune(sessions, keep_days=200, actor="cli:ops", now=time.time() + 400 * 86400)
    assert (result.pruned, result.checkpoint_seq) == (3, 4)
    fill(trail, 2)
    assert [r["seq"] for r in rows(engine)] == [4, 5, 6]
    assert verify(sessions).ok


def test_export_filters_and_formats(db):
    _, sessions, _ = db
    trail = AuditTrail(sessions)
    fill(trail, 2)
    middle = time.time()
    trail.record(tenant="acme", actor="key2", action="score.override", interview_id="iv1",
                 detail={"competency": "empathy", "score": 70})
    trail.record(tenant="globex", actor="key3", action="scorecard.read", interview_id="gx1")
    assert [e["seq"] for e in entries(sessions, tenant="acme")] == [1, 2, 3]
    assert [e["seq"] for e in entries(sessions, since=middle)] == [3, 4]
    assert [e["seq"] for e in entries(sessions, until=middle)] == [1, 2]
    assert [e["seq"] for e in entries(sessions, tenant="acme", action="score.override")] == [3]

    lines = list(jsonl_lines(entries(sessions, tenant="acme")))
    parsed = [json.loads(line) for line in lines]
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    assert parsed[2]["detail"] == {"competency": "empathy", "score": 70} and parsed[2]["actor"] == "key2"
    assert parsed[1]["hash"] == parsed[2]["prev_hash"]
    assert parsed[0]["time"].endswith("Z") and parsed[0]["time"].startswith(time.strftime("%Y-", time.gmtime()))

    table = list(csv.DictReader(io.StringIO("".join(csv_lines(entries(sessions))))))
    assert [int(r["seq"]) for r in table] == [1, 2, 3, 4]
    assert json.loads(table[2]["detail"]) == {"competency": "empathy", "score": 70}
    assert (table[3]["tenant"], table[3]["detail"], table[3]["prev_hash"]) == ("globex", "", table[2]["hash"])
    assert "".join(csv_lines(iter([]))).strip() == "seq,at,time,tenant,actor,action,interview_id,detail,prev_hash,hash"


def test_export_reads_page_by_page(db):
    _, sessions, _ = db
    fill(AuditTrail(sessions), 7)
    from poise_common import audit_trail

    assert [r.seq for r in audit_trail._rows(sessions, batch=3)] == list(range(1, 8))
