"""`poise audit-log` as an operator runs it: real processes on a POISE_HOME database."""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from poise_common.audit_trail import AuditTrail
from poise_common.db.engine import create_db_engine, session_factory, upgrade


def poise(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poise", "audit-log", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


@pytest.fixture()
def home(poise_home: Path):
    """Five entries: three of acme (the last after ``middle``), two of globex."""
    engine = create_db_engine(f"sqlite:///{poise_home / 'poise.db'}")
    upgrade(engine)
    trail = AuditTrail(session_factory(engine))
    trail.record(tenant="acme", actor="k1", action="scorecard.read", interview_id="iv1", detail={"via": "rest"})
    trail.record(tenant="globex", actor="k2", action="scorecard.list", detail={"via": "rest", "interview_ids": []})
    trail.record(tenant="acme", actor="system", action="interview.scored", interview_id="iv1")
    time.sleep(0.01)
    middle = time.time()
    trail.record(tenant="acme", actor="k1", action="score.override", interview_id="iv1",
                 detail={"competency": "empathy", "score": 70})
    trail.record(tenant="globex", actor="k2", action="scorecard.read", interview_id="gx1")
    yield engine, middle
    engine.dispose()


def test_export_as_json_lines_and_csv_with_filters(home, tmp_path):
    _, middle = home
    run = poise("export", "--tenant", "acme")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(e["seq"], e["action"]) for e in lines] == [(1, "scorecard.read"), (3, "interview.scored"),
                                                        (4, "score.override")]
    assert lines[2]["detail"] == {"competency": "empathy", "score": 70} and lines[2]["prev_hash"] == lines[1]["hash"]

    recent = poise("export", "--since", str(middle), "--action", "scorecard.read")
    assert [json.loads(line)["seq"] for line in recent.stdout.splitlines()] == [5]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(middle - 3600)) + "Z"
    assert len(poise("export", "--until", iso).stdout.splitlines()) == 0

    out = tmp_path / "log.csv"
    written = poise("export", "--format", "csv", "--out", str(out))
    assert written.returncode == 0 and written.stdout == ""
    assert "5 entries written" in written.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [int(r["seq"]) for r in rows] == [1, 2, 3, 4, 5]
    assert [r["prev_hash"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]]


def test_verify_reports_the_first_broken_entry(home):
    engine, _ = home
    ok = poise("verify")
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 5 entries verified; newest entry 5 has hash ")
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET actor = 'k9' WHERE seq = 2"))
    broken = poise("verify")
    assert broken.returncode == 1
    assert broken.stderr.strip().startswith("poise: error: the audit log is broken at entry 2:")
    assert len(broken.stderr.strip().splitlines()) == 1


def test_prune_keeps_at_least_six_months_and_leaves_a_checkpoint(home):
    refused = poise("prune", "--keep-days", "30")
    assert refused.returncode == 2 and "at least 183 days" in refused.stderr
    assert poise("prune", POISE_AUDIT_LOG_RETENTION_DAYS="90").returncode != 0  # the setting is validated too
    nothing = poise("prune")
    assert nothing.returncode == 0 and nothing.stdout.strip() == "nothing to prune: no entry is older than 400 days"
    engine, _ = home
    with engine.begin() as connection:  # the first three entries become 200 days old
        connection.execute(text("UPDATE audit_events SET at = at - 200 * 86400 WHERE seq <= 3"))
    # Aged by hand, the entries no longer match their hashes: rebuild the chain as if written then.
    rechain(engine)
    pruned = poise("prune", "--keep-days", "183")
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.strip() == "pruned 3 entries (through entry 3); checkpoint entry 6"
    after = [json.loads(line) for line in poise("export").stdout.splitlines()]
    assert [e["seq"] for e in after] == [4, 5, 6]
    assert (after[-1]["action"], after[-1]["actor"]) == ("audit_log.prune", f"cli:{getpass.getuser()}")
    assert poise("verify").returncode == 0


def rechain(engine) -> None:
    """Recompute every hash in order (the test's stand-in for entries written long ago)."""
    from poise_common.audit_trail import GENESIS, entry_hash

    previous = GENESIS
    with engine.begin() as connection:
        rows = connection.execute(text(
            "SELECT seq, at, tenant, actor, action, interview_id, detail FROM audit_events ORDER BY seq")).all()
        for seq, at, tenant, actor, action, interview_id, detail in rows:
            digest = entry_hash(previous, seq, at, tenant, actor, action, interview_id,
                                json.loads(detail) if detail else None)
            connection.execute(text("UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = :s"),
                               {"p": previous, "h": digest, "s": seq})
            previous = digest
