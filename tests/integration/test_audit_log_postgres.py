"""The audit log on a real PostgreSQL server: writers in several processes and threads at once never
fork the chain, tampering is found, and pruning leaves a verifiable chain."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import text

from poise_common.audit_trail import AuditTrail, prune, verify
from poise_common.db.engine import create_db_engine, session_factory, upgrade

WRITER = Path(__file__).resolve().parents[2] / "libs" / "common" / "tests" / "audit_writer.py"


def test_processes_and_threads_appending_at_once_on_postgresql(postgres, tmp_path):
    url = postgres.create_database(f"audit_{uuid.uuid4().hex[:8]}")
    engine = create_db_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, str(WRITER), url, f"p{n}", "80", str(go)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for n in range(2)]
    for writer in writers:
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
    # Two replicas' worth of threads in this process too, each replica with its own engine.
    engines = [create_db_engine(url) for _ in range(2)]
    trails = [AuditTrail(session_factory(e)) for e in engines]

    def write(n: int) -> None:
        while not go.exists():
            time.sleep(0.005)
        for i in range(20):
            trails[n % 2].record(tenant="globex", actor=f"t{n}", action="scorecard.list", detail={"i": i})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    go.touch()
    for thread in threads:
        thread.join()
    for writer in writers:
        _, errors = writer.communicate(timeout=300)
        assert writer.returncode == 0, errors
    for e in engines:
        e.dispose()

    with engine.connect() as connection:
        actors = [r[0] for r in connection.execute(text("SELECT actor FROM audit_events ORDER BY seq"))]
        seqs = [r[0] for r in connection.execute(text("SELECT seq FROM audit_events ORDER BY seq"))]
    assert seqs == list(range(1, 241))
    assert sorted(set(actors)) == ["p0", "p1", "t0", "t1", "t2", "t3"]
    assert sum(a != b for a, b in zip(actors, actors[1:])) >= 5  # the writers really overlapped
    result = verify(sessions)
    assert (result.ok, result.entries) == (True, 240)

    def swap_7_and_9() -> None:  # through a free seq: the key is checked row by row
        with engine.begin() as connection:
            for change in ((7, -7), (9, 7), (-7, 9)):
                connection.execute(text("UPDATE audit_events SET seq = :new WHERE seq = :old"),
                                   {"old": change[0], "new": change[1]})

    swap_7_and_9()
    assert verify(sessions).first_bad_seq == 7
    swap_7_and_9()  # back: the chain holds again
    assert verify(sessions).ok

    pruned = prune(sessions, keep_days=183, actor="cli:ops", now=time.time() + 365 * 86400)
    assert (pruned.pruned, pruned.checkpoint_seq) == (240, 241)
    AuditTrail(sessions).record(tenant="acme", actor="k1", action="scorecard.read", interview_id="iv1")
    result = verify(sessions)
    assert (result.ok, result.entries, result.head_seq) == (True, 2, 242)
    engine.dispose()
