"""Fusion's side of the data lifecycle, on a real SQLite file: what was said is stored encrypted,
an erasure removes every row and leaves a tombstone that drops late messages, retention purges."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import func, select, text

from poise_common.audit_trail import AuditTrail
from poise_common.bus.memory import MemoryBus
from poise_common.crypto import CryptoError, KeyRing, LocalMasterKey, MasterKeys
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.db.models import (
    Answer, AnswerPart, AuditEvent, CandidateInterview, Demographics, Failure, GreenhouseTest, Interview,
    Scorecard, ScoreOverride, VisionFrame, Webhook, WebhookDelivery,
)
from poise_common.messages import (
    AnswerMediaDone, AudioFeatures, Envelope, FrameFeatures, InterviewOpened, NlpFeatures, Question, Topics,
    Transcript, VisionEnd,
)
from poise_common.settings import PoiseSettings, RetentionSettings
from poise_common.signals import AudioSignals, NlpSignals, Quote, TranscriptSegment, Word
from poise_fusion.calibration import stored_features
from poise_fusion.erasure import CandidateIndex, erase_rows
from poise_fusion.framework import get_framework
from poise_fusion.retention import RetentionJob, set_tenant_retention
from poise_fusion.service import FusionService
from poise_fusion.store import FusionStore, InterviewGone

SAID = "Our quartermaster negotiated the zeppelin schedule with every stakeholder together"
WORDS = ("quartermaster", "zeppelin", "stakeholder")


@pytest.fixture()
def db(tmp_path):
    path = tmp_path / "poise.db"
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade(engine)
    sessions = session_factory(engine)
    keys = KeyRing(sessions, MasterKeys([LocalMasterKey("test", bytes(32))]))
    yield path, sessions, keys
    engine.dispose()


def messages(interview_id: str, tenant: str) -> list[Envelope]:
    answer_id = f"{interview_id}-a1"

    def env(stream: str, seq: int, payload, answer: str = answer_id) -> Envelope:
        return Envelope(interview_id=interview_id, answer_id=answer, tenant=tenant, stream=stream, seq=seq,
                        payload=payload)

    words = [Word(start_s=0.3 * i, end_s=0.3 * i + 0.25, word=w) for i, w in enumerate(SAID.split())]
    return [
        env("control", 0, InterviewOpened(role="generic", questions=[Question(question_id="q1", text="Why?")]), ""),
        env("control", 1, AnswerMediaDone(question_id="q1", duration_s=4.0, frame_count=1, audio_count=4,
                                          has_video=True, sample_fps=10.0)),
        env("vision", 0, FrameFeatures(t_s=0.0, face_count=0)),
        env("vision", 1, VisionEnd(count=1)),
        env("transcript", 0, Transcript(duration_s=4.0, segments=[
            TranscriptSegment(start_s=0.0, end_s=3.5, text=SAID, words=words)])),
        env("audio", 0, AudioFeatures(signals=AudioSignals(duration_s=4.0, speech_s=3.5, speech_ratio=0.87))),
        env("nlp", 0, NlpFeatures(signals=NlpSignals(
            word_count=40, we_count=2, we_ratio=1.0, quotes=[Quote(feature="we", text=SAID, start_s=0.0,
                                                                    end_s=3.5)]))),
    ]


def score(sessions, keys, interview_id: str, tenant: str = "acme") -> FusionStore:
    store = FusionStore(sessions, keys)

    async def scenario():
        bus = MemoryBus()
        await bus.start()
        service = FusionService(bus, store, PoiseSettings())
        for env in messages(interview_id, tenant):
            await service.handle(env)
        await bus.stop()

    asyncio.run(scenario())
    return store


def add_the_rest(sessions, interview_id: str, tenant: str) -> None:
    """Rows the other parts of the product make for an interview."""
    with sessions.begin() as session:
        session.add(Demographics(interview_id=interview_id, tenant=tenant, sex="female"))
        session.add(ScoreOverride(interview_id=interview_id, tenant=tenant, competency="empathy", score=70,
                                  reason="watched it", reviewer="k1"))
        session.add(Webhook(id=f"hook-{tenant}", tenant=tenant, url="https://example.com/h", secret="s",
                            events=["interview.scored"]))
        session.add(WebhookDelivery(id=f"d-{interview_id}"[:32], webhook_id=f"hook-{tenant}", tenant=tenant,
                                    event_type="interview.scored", interview_id=interview_id, body="{}"))
        session.add(GreenhouseTest(id=interview_id, tenant=tenant, partner_test_id="generic",
                                   candidate_email="ada@example.com", candidate_name="Ada Lovelace",
                                   invitation_url="https://x/candidate", callback_url="https://gh/cb"))
        session.add(CandidateInterview(interview_id=interview_id, tenant=tenant, candidate_ref_hash="0" * 64))


def rows_about(sessions, interview_id: str) -> dict[str, int]:
    answer_ids = select(Answer.id).where(Answer.interview_id == interview_id)
    queries = {
        "interviews": select(func.count()).select_from(Interview).where(Interview.id == interview_id),
        "answers": select(func.count()).select_from(Answer).where(Answer.interview_id == interview_id),
        "answer_parts": select(func.count()).select_from(AnswerPart).where(AnswerPart.answer_id.in_(answer_ids)),
        "vision_frames": select(func.count()).select_from(VisionFrame).where(VisionFrame.answer_id.in_(answer_ids)),
        "scorecards": select(func.count()).select_from(Scorecard).where(Scorecard.interview_id == interview_id),
        "score_overrides": select(func.count()).select_from(ScoreOverride).where(
            ScoreOverride.interview_id == interview_id),
        "demographics": select(func.count()).select_from(Demographics).where(Demographics.interview_id == interview_id),
        "webhook_deliveries": select(func.count()).select_from(WebhookDelivery).where(
            WebhookDelivery.interview_id == interview_id),
        "greenhouse_tests": select(func.count()).select_from(GreenhouseTest).where(GreenhouseTest.id == interview_id),
        "candidate_interviews": select(func.count()).select_from(CandidateInterview).where(
            CandidateInterview.interview_id == interview_id),
    }
    with sessions() as session:
        return {kind: session.scalar(query) for kind, query in queries.items()}


def database_bytes(path, sessions) -> bytes:
    with sessions() as session:
        session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_what_was_said_is_encrypted_in_the_database_and_read_back_whole(db):
    path, sessions, keys = db
    store = score(sessions, keys, "iv1")
    card = store.reviewed_scorecard("iv1")
    assert card is not None and card["answers"][0]["transcript"][0]["text"] == SAID
    assert any(e.get("text") == SAID for c in card["competencies"] for e in c["evidence"])
    raw = database_bytes(path, sessions)
    assert all(word.encode() not in raw for word in WORDS)
    with sessions() as session:
        stored = session.get(Scorecard, "iv1").document
    # Numbers stay readable where audits, overrides and calibration read them straight from the column.
    assert "$sealed" in stored and stored["answers"][0]["transcript"] is None
    assert [c["score"] for c in stored["competencies"]] == [c["score"] for c in card["competencies"]]
    framework = get_framework("generic")
    assert stored_features(framework, stored) == stored_features(framework, card) != {}
    with pytest.raises(CryptoError):
        FusionStore(sessions).scorecard("iv1")  # no key ring: it cannot be read, rather than read wrong
    with pytest.raises(CryptoError):
        FusionStore(sessions, KeyRing(sessions, MasterKeys([LocalMasterKey("other", bytes(range(32)))]))
                    ).scorecard("iv1")


def test_an_erasure_removes_every_row_and_drops_messages_that_arrive_later(db):
    path, sessions, keys = db
    store = score(sessions, keys, "iv1")
    score(sessions, keys, "iv2", "globex")
    for interview_id, tenant in (("iv1", "acme"), ("iv2", "globex")):
        add_the_rest(sessions, interview_id, tenant)
    before = rows_about(sessions, "iv1")
    assert all(before.values()), before
    with sessions.begin() as session:
        wrong_tenant = erase_rows(session, "globex", ["iv1"], tombstone=False)
    assert sum(wrong_tenant.values()) == 0 and rows_about(sessions, "iv1") == before
    with sessions.begin() as session:
        counts = erase_rows(session, "acme", ["iv1"], tombstone=True)
    assert {k: v for k, v in counts.items() if v} == {k: v for k, v in before.items() if k != "interviews"}
    assert not any(rows_about(sessions, "iv1").values())
    assert all(rows_about(sessions, "iv2").values())  # the other tenant's interview is whole
    with sessions() as session:
        tombstone = session.get(Failure, "iv1")
    assert (tombstone.tenant, tombstone.reason) == ("acme", "erased")
    assert store.interview_status("iv1") is None  # unknown, not "failed"
    # Kafka may still hold the interview's messages: replayed, they store nothing again.
    applied = [store.apply(env) for env in messages("iv1", "acme")]
    assert applied == [(False, None)] * len(applied)
    assert not any(rows_about(sessions, "iv1").values())
    raw = database_bytes(path, sessions)
    assert b"Ada Lovelace" in raw  # iv2's Greenhouse order is still there ...
    with sessions.begin() as session:
        erase_rows(session, "globex", ["iv2"], tombstone=True)
    raw = database_bytes(path, sessions)
    assert b"Ada Lovelace" not in raw and b"ada@example.com" not in raw  # ... and then zeroed, not freed


def test_fusion_drops_an_interview_erased_while_it_was_being_scored(db, caplog):
    _path, sessions, keys = db
    store = score(sessions, keys, "iv1")
    with sessions.begin() as session:
        erase_rows(session, "acme", ["iv1"], tombstone=True)
    with pytest.raises(InterviewGone):
        store.answer_bundle("iv1-a1")
    with pytest.raises(InterviewGone):
        store.save_answer_result("iv1-a1", {})
    with pytest.raises(InterviewGone):
        store.save_scorecard("iv1", "acme", "generic@1", {})


    class ErasedMidway(FusionStore):
        """Erased by another process right after fusion learned the role, before it read the answer."""

        def interview_role(self, interview_id: str):
            found = super().interview_role(interview_id)
            with self.sessions.begin() as session:
                erase_rows(session, "acme", [interview_id], tombstone=True)
            return found

    async def handle_late() -> list:
        bus = MemoryBus()
        await bus.start()
        events: list = []

        async def keep(env) -> None:
            events.append(env)

        await bus.subscribe([Topics.SCORECARDS], "test", keep)
        service = FusionService(bus, ErasedMidway(sessions, keys), PoiseSettings())
        for env in messages("iv2", "acme"):
            await service.handle(env)  # the last one completes the answer; nothing raises
        await asyncio.sleep(0.1)
        await bus.stop()
        return events

    caplog.set_level("INFO", logger="poise_fusion.service")
    assert asyncio.run(handle_late()) == []
    assert "message for an erased interview dropped" in caplog.text
    assert not any(rows_about(sessions, "iv2").values())


def test_retention_purges_what_is_older_than_each_tenants_retention(db):
    _path, sessions, keys = db
    for interview_id, tenant in (("old", "acme"), ("kept", "globex")):
        score(sessions, keys, interview_id, tenant)
        add_the_rest(sessions, interview_id, tenant)
    long_ago = time.time() - 40 * 86400
    with sessions.begin() as session:
        session.add(Failure(interview_id="tomb-old", tenant="acme", reason="erased", created_at=long_ago))
        session.add(Failure(interview_id="tomb-new", tenant="acme", reason="erased"))
    set_tenant_retention(sessions, "acme", 0)
    before = rows_about(sessions, "old")
    job = RetentionJob(sessions, RetentionSettings(tombstone_days=30), audit=AuditTrail(sessions))

    dry = asyncio.run(job.run_once(dry_run=True, now=time.time() + 1))
    assert rows_about(sessions, "old") == before  # a dry run removes nothing
    report = asyncio.run(job.run_once(now=time.time() + 1))
    assert dict(dry.tenants["acme"]) == dict(report.tenants["acme"]) and dry.tombstones == report.tombstones == 1
    assert list(report.tenants) == ["acme"]
    assert report.removed["interviews"] == 1 and report.removed["answer_parts"] == before["answer_parts"]
    assert not any(rows_about(sessions, "old").values())
    assert all(rows_about(sessions, "kept").values())  # globex keeps the default 365 days
    with sessions() as session:
        assert set(session.scalars(select(Failure.interview_id))) == {"tomb-new"}
        purges = session.scalars(select(AuditEvent).where(AuditEvent.action == "media.purge")).all()
    assert [(p.tenant, p.actor, p.detail["removed"]["interviews"]) for p in purges] == [("acme", "system", 1)]


def test_a_candidate_is_found_by_reference_or_by_the_email_of_a_greenhouse_order(db):
    _path, sessions, keys = db
    index = CandidateIndex(sessions, keys)
    index.record("acme", "by-ref", "ats-4711")
    index.record("globex", "other-tenant", "ats-4711")
    with sessions.begin() as session:  # Greenhouse orders for ada@example.com
        for interview_id, tenant in (("ordered", "acme"), ("ordered-elsewhere", "globex")):
            session.add(GreenhouseTest(id=interview_id, tenant=tenant, partner_test_id="generic",
                                       candidate_email="ada@example.com", invitation_url="u", callback_url="c"))
    digest, found = index.interviews("acme", "ats-4711")
    assert found == ["by-ref"] and digest == keys.ref_hash("acme", "ats-4711")
    assert index.interviews("acme", " Ada@Example.com")[1] == ["ordered"]
    assert index.interviews("acme", "ats-4712")[1] == []
    with sessions() as session:
        hashes = session.scalars(select(CandidateInterview.candidate_ref_hash)).all()
    assert len(set(hashes)) == 2  # the same reference hashes apart in two tenants
