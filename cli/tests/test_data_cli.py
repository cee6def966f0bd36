"""`poise keys rotate-data-key | rewrap | new-master-key`, `poise retention` and `poise purge`, as an
operator runs them: real processes on a real SQLite file, checked against the database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from poise_common.crypto import KeyRing, MasterKeys
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.db.models import AuditEvent, CandidateInterview, TenantKey
from poise_common.settings import PoiseSettings


def poise(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "POISE_HOME": str(home), **env}
    environ.pop("POISE_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "poise", *args], capture_output=True, text=True, env=environ,
                          timeout=300)


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def sessions_of(home: Path):
    engine = create_db_engine(f"sqlite:///{home / 'poise.db'}")
    upgrade(engine)
    return engine, session_factory(engine)


def test_rotation_and_rewrap_keep_data_readable(tmp_path):
    home = tmp_path / "home"
    engine, sessions = sessions_of(home)
    generated = KeyRing(sessions, MasterKeys.from_settings(PoiseSettings(home=home)))
    before = generated.encrypt("acme", b"answer one", b"r")
    assert ok(poise(home, "keys", "rotate-data-key", "--tenant", "acme")) == "acme: data key version 2 is active"
    entry = ok(poise(home, "keys", "new-master-key", "prod-2"))
    assert entry.startswith("prod-2:") and len(entry) > 40
    assert "re-wrapped 2 data keys with master key prod-2" in ok(
        poise(home, "keys", "rewrap", "--master", "prod-2", POISE_MASTER_KEYS=entry))
    with sessions() as session:
        rows = session.execute(select(TenantKey.version, TenantKey.master_key_id, TenantKey.active)).all()
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)).all()
    assert sorted(rows) == [(1, "prod-2", False), (2, "prod-2", True)]
    assert actions == ["key.rotate", "key.rotate"]
    # Only the new master key from here on: the generated one can go.
    (home / "master.key").unlink()
    configured = KeyRing(sessions, MasterKeys.from_settings(PoiseSettings(home=home, master_keys=entry)))
    assert configured.decrypt("acme", before, b"r") == b"answer one"
    assert configured.active_key("acme")[0] == 2
    unknown = poise(home, "keys", "rewrap", "--master", "nope", POISE_MASTER_KEYS=entry)
    assert unknown.returncode == 2 and "not among" in unknown.stderr
    engine.dispose()


def test_retention_and_purge(tmp_path):
    home = tmp_path / "home"
    engine, sessions = sessions_of(home)
    with sessions.begin() as session:
        session.add(CandidateInterview(interview_id="a" * 32, tenant="acme", candidate_ref_hash="0" * 64))
        session.add(CandidateInterview(interview_id="b" * 32, tenant="globex", candidate_ref_hash="0" * 64))
    assert ok(poise(home, "retention", "show", "acme")) == "acme: 365 days (the default)"
    assert ok(poise(home, "retention", "set", "acme", "0")) == "acme: candidate data is kept 0 days"
    assert ok(poise(home, "retention", "show", "acme")) == "acme: 0 days"
    refused = poise(home, "retention", "set", "acme", "a year")
    assert refused.returncode == 2 and "whole number" in refused.stderr
    assert ok(poise(home, "purge", "--dry-run")).startswith("would remove 1 expired interviews' data")
    with sessions() as session:
        assert len(session.scalars(select(CandidateInterview)).all()) == 2
    assert "candidate_interviews: 1" in ok(poise(home, "purge"))
    with sessions() as session:
        assert session.scalars(select(CandidateInterview.tenant)).all() == ["globex"]
        purge = session.scalars(select(AuditEvent).where(AuditEvent.action == "media.purge")).one()
    assert purge.tenant == "acme" and purge.actor.startswith("cli:")
    assert ok(poise(home, "retention", "set", "acme", "default")) == "acme: candidate data is kept the default (365 days)"
    engine.dispose()
