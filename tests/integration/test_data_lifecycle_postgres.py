"""Data keys, erasure and retention on a real PostgreSQL server (the distributed deployment's database)."""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import func, select

from poise_common.crypto import KeyRing, LocalMasterKey, MasterKeys
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.db.models import (
    Answer, AnswerPart, CandidateInterview, Failure, GreenhouseTest, Interview, Scorecard, TenantKey,
)
from poise_common.settings import RetentionSettings
from poise_fusion.erasure import CandidateIndex, erase_rows
from poise_fusion.retention import PurgeReport, purge_database, set_tenant_retention
from poise_fusion.store import FusionStore


def database(postgres):
    engine = create_db_engine(postgres.create_database(f"lifecycle_{uuid.uuid4().hex[:8]}"))
    upgrade(engine)
    return engine, session_factory(engine)


def add_interview(sessions, keys: KeyRing, interview_id: str, tenant: str, created_at: float | None = None) -> None:
    with sessions.begin() as session:
        session.add(Interview(id=interview_id, tenant=tenant, created_at=created_at or time.time()))
        session.add(GreenhouseTest(id=interview_id, tenant=tenant, partner_test_id="generic",
                                   candidate_email="Ada@Example.com", invitation_url="u", callback_url="c"))
    with sessions.begin() as session:
        session.add(Answer(id=f"{interview_id}-a1", interview_id=interview_id, status="scored"))
    with sessions.begin() as session:
        session.add(AnswerPart(answer_id=f"{interview_id}-a1", part="transcript",
                               data={"$sealed": keys.seal(tenant, {"": {"text": "hello"}}, "x")}))
    document = {"answers": [{"transcript": [{"text": "hi"}]}]}
    assert FusionStore(sessions, keys).save_scorecard(interview_id, tenant, "generic@1", document)


def test_data_keys_are_made_once_under_concurrent_first_use_and_rotate(postgres):
    engine, sessions = database(postgres)
    masters = MasterKeys([LocalMasterKey("m1", bytes(range(32)))])
    rings = [KeyRing(sessions, masters) for _ in range(6)]
    start = threading.Barrier(len(rings))
    keys: list[bytes] = []

    def first_use(ring: KeyRing) -> None:
        start.wait()
        keys.append(ring.active_key("acme")[1])

    threads = [threading.Thread(target=first_use, args=(ring,)) for ring in rings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1  # every replica encrypts with the one key that won
    blob = rings[0].encrypt("acme", b"v1 data", b"r")
    assert rings[1].rotate("acme") == 2
    moved = KeyRing(sessions, MasterKeys([LocalMasterKey("m2", bytes(32)), *[masters.active]])).rewrap("m2")
    assert moved == [("acme", 1), ("acme", 2)]
    fresh = KeyRing(sessions, MasterKeys([LocalMasterKey("m2", bytes(32))]))
    assert fresh.decrypt("acme", blob, b"r") == b"v1 data" and fresh.active_key("acme")[0] == 2
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(TenantKey)) == 2
    engine.dispose()


def test_erasure_and_retention_on_postgresql(postgres):
    engine, sessions = database(postgres)
    keys = KeyRing(sessions, MasterKeys([LocalMasterKey("m1", bytes(range(32)))]))
    index = CandidateIndex(sessions, keys)
    add_interview(sessions, keys, "mine", "acme")
    add_interview(sessions, keys, "theirs", "globex")
    index.record("acme", "mine", "ats-1")
    assert index.interviews("acme", "ada@example.com")[1] == ["mine"]
    assert FusionStore(sessions, keys).scorecard("mine")["answers"][0]["transcript"] == [{"text": "hi"}]
    with sessions.begin() as session:
        counts = erase_rows(session, "acme", ["mine"], tombstone=True)
    assert counts["answer_parts"] == 1 and counts["scorecards"] == 1 and counts["greenhouse_tests"] == 1
    assert counts["candidate_interviews"] == 1
    with sessions() as session:
        assert session.get(Interview, "mine") is None and session.get(Failure, "mine").reason == "erased"
        assert session.get(Scorecard, "theirs") is not None

    add_interview(sessions, keys, "old", "globex", created_at=time.time() - 10 * 86400)
    set_tenant_retention(sessions, "globex", 5)
    report = PurgeReport(dry_run=False)
    purge_database(sessions, RetentionSettings(), report, time.time())
    assert list(report.tenants) == ["globex"] and report.removed["interviews"] == 1
    with sessions() as session:
        assert set(session.scalars(select(Interview.id))) == {"theirs"}
        assert session.scalar(select(func.count()).select_from(CandidateInterview)) == 0
    engine.dispose()
