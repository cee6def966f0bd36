"""The gateway's media at rest: encrypted on disk, published from a short-lived clear copy, erased
on request (REST, with receipts and tenant isolation), swept by retention."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from poise_common.audit_trail import AuditTrail
from poise_common.auth import KeyStore
from poise_common.bus.memory import MemoryBus
from poise_common.crypto import KeyRing, LocalMasterKey, MasterKeys
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.db.models import AuditEvent, CandidateInterview, Erasure, Failure
from poise_common.messages import AnswerMediaDone, Envelope, Topics
from poise_common.settings import PoiseSettings, RetentionSettings
from poise_fusion.erasure import CandidateIndex, Eraser, create_erasure_router
from poise_fusion.retention import RetentionJob
from poise_gateway.api import UploadDesk, create_router
from poise_gateway.media_vault import MediaVault
from poise_gateway.service import Gateway

QUESTIONS = [{"question_id": "q1", "text": "Tell me about a time you disagreed with a colleague."}]
REF = "ats-candidate-4711"


@dataclass
class Harness:
    client: httpx.AsyncClient
    bus: MemoryBus
    desk: UploadDesk
    sessions: object
    keys: KeyStore
    auth: dict  # tenant -> headers of an interviews:write key

    async def create(self, tenant: str = "acme", **extra) -> str:
        response = await self.client.post("/v1/interviews", json={"questions": QUESTIONS, **extra},
                                          headers=self.auth[tenant])
        assert response.status_code == 201, response.text
        return response.json()["interview_id"]

    async def put(self, interview_id: str, content: bytes, tenant: str = "acme") -> httpx.Response:
        return await self.client.put(f"/v1/interviews/{interview_id}/answers/q1", content=content,
                                     headers=self.auth[tenant])

    def eraser_headers(self, tenant: str, scopes: list[str]) -> dict:
        return {"Authorization": f"Bearer {self.keys.create(tenant, scopes)}"}


@asynccontextmanager
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = PoiseSettings(home=tmp_path / "home")
    engine = create_db_engine(f"sqlite:///{tmp_path / 'poise.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    data_keys = KeyRing(sessions, MasterKeys([LocalMasterKey("test", bytes(range(32)))]))
    audit = AuditTrail(sessions)
    bus = MemoryBus()
    await bus.start()
    candidates = CandidateIndex(sessions, data_keys)
    desk = UploadDesk(settings.media_dir, Gateway(bus, settings.gateway), settings.gateway, default_role="generic",
                      vault=MediaVault(data_keys, settings.media_dir / ".clear", audit), candidates=candidates)
    desk.prepare()
    keys = KeyStore(sessions)
    app = FastAPI()
    app.include_router(create_router(desk, settings, keys))
    app.include_router(create_erasure_router(Eraser(sessions, candidates, desk, audit), keys))
    auth = {t: {"Authorization": f"Bearer {keys.create(t, ['interviews:write'])}"} for t in ("acme", "globex")}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                     timeout=60) as client:
            yield Harness(client, bus, desk, sessions, keys, auth)
    finally:
        await bus.stop()
        engine.dispose()


def every_byte_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_an_answer_is_encrypted_on_disk_and_published_from_a_clear_copy_that_is_then_gone(tmp_path, media_dir):
    video = (media_dir / "single_face.mp4").read_bytes()
    samples = [video[i : i + 48] for i in range(1000, len(video) - 48, len(video) // 7)]

    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create(candidate_ref=REF)
            accepted = await h.put(interview_id, video)
            on_disk = every_byte_under(h.desk.root)
            clear_left = list((h.desk.root / ".clear").iterdir())
            done = await h.client.post(f"/v1/interviews/{interview_id}/complete", headers=h.auth["acme"])
            records = await h.bus.read_all(Topics.MEDIA_CONTROL)
            with h.sessions() as session:
                reads = session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "media.read")).all()
            return (accepted, on_disk, clear_left, done, records, reads,
                    list((h.desk.root / ".clear").iterdir()), every_byte_under(h.desk.root))

    accepted, on_disk, clear_left, done, records, reads, clear_after, after = asyncio.run(scenario())
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["size_bytes"] == len(video)  # the probe saw the clear file
    assert all(sample not in on_disk for sample in samples)
    assert b"ftyp" not in on_disk and REF.encode() not in on_disk  # no MP4 header, no candidate reference
    assert clear_left == [] and clear_after == []
    assert done.status_code == 202
    media = [p for p in (Envelope.from_bytes(r).payload for r in records) if isinstance(p, AnswerMediaDone)]
    assert len(media) == 1 and media[0].frame_count > 10  # decrypted and decoded
    assert [d["purpose"] for d in reads] == ["probe", "publish"]
    assert REF.encode() not in after


def test_a_tampered_media_file_is_not_published(tmp_path, media_dir):
    video = (media_dir / "single_face.mp4").read_bytes()

    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create()
            assert (await h.put(interview_id, video)).status_code == 200
            (stored,) = (h.desk.root / interview_id).glob("*.media")
            data = bytearray(stored.read_bytes())
            data[len(data) // 2] ^= 0x40
            stored.write_bytes(bytes(data))
            done = await h.client.post(f"/v1/interviews/{interview_id}/complete", headers=h.auth["acme"])
            records = await h.bus.read_all(Topics.MEDIA_CONTROL)
            return done, records, list((h.desk.root / ".clear").iterdir())

    done, records, clear_left = asyncio.run(scenario())
    assert done.status_code == 500 and done.json()["error"]["code"] == "publish_failed"
    assert clear_left == []
    # The altered file never became an answer: nothing announces its media as complete.
    assert not [r for r in records if isinstance(Envelope.from_bytes(r).payload, AnswerMediaDone)]


def test_the_candidate_ref_is_kept_only_as_a_keyed_hash(tmp_path):
    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create(candidate_ref=REF)
            manifest = json.loads((h.desk.root / interview_id / "manifest.json").read_text())
            with h.sessions() as session:
                row = session.get(CandidateInterview, interview_id)
            return manifest, row

    manifest, row = asyncio.run(scenario())
    assert manifest["candidate_ref"] is None
    assert row.tenant == "acme" and len(row.candidate_ref_hash) == 64 and REF not in row.candidate_ref_hash
    assert REF.encode() not in (tmp_path / "poise.db").read_bytes()


def test_erasure_removes_the_candidates_interviews_only_within_the_callers_tenant(tmp_path, media_dir):
    video = (media_dir / "single_face.mp4").read_bytes()

    async def scenario():
        async with harness(tmp_path) as h:
            mine = [await h.create(candidate_ref=REF) for _ in range(2)]
            other_candidate = await h.create(candidate_ref="someone-else")
            other_tenant = await h.create("globex", candidate_ref=REF)
            for interview_id in mine:
                assert (await h.put(interview_id, video)).status_code == 200
            assert (await h.put(other_tenant, video, "globex")).status_code == 200
            writer = await h.client.delete(f"/v1/candidates/{REF}", headers=h.auth["acme"])
            eraser = h.eraser_headers("acme", ["candidates:erase"])
            receipt = await h.client.delete(f"/v1/candidates/{REF}", headers=eraser)
            again = await h.client.delete(f"/v1/candidates/{REF}", headers=eraser)
            shown = await h.client.get(f"/v1/erasures/{receipt.json()['erasure_id']}", headers=eraser)
            foreign = await h.client.get(f"/v1/erasures/{receipt.json()['erasure_id']}",
                                         headers=h.eraser_headers("globex", ["admin"]))
            folders = set(h.desk.folder_ids())
            with h.sessions() as session:
                tombstones = set(session.scalars(select(Failure.interview_id).where(Failure.reason == "erased")))
                left = set(session.scalars(select(CandidateInterview.interview_id)))
                erasures = session.scalar(select(func.count()).select_from(Erasure).where(Erasure.status == "completed"))
                logged = session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "candidate.erase")).all()
            return (mine, other_candidate, other_tenant, writer, receipt, again, shown, foreign, folders, tombstones,
                    left, erasures, logged)

    (mine, other_candidate, other_tenant, writer, receipt, again, shown, foreign, folders, tombstones, left,
     erasures, logged) = asyncio.run(scenario())
    assert writer.status_code == 403  # interviews:write does not erase
    assert receipt.status_code == 200, receipt.text
    body = receipt.json()
    assert body["status"] == "completed" and body["interviews"] == 2
    assert body["removed"]["media_files"] == 4  # each: its manifest and its encrypted answer
    assert body["removed"]["candidate_interviews"] == 2
    assert body["completed_at"] >= body["requested_at"]
    assert again.json()["interviews"] == 0  # nothing left to find
    assert shown.status_code == 200 and shown.json() == body
    assert foreign.status_code == 404
    assert folders == {other_candidate, other_tenant}
    assert tombstones == set(mine)
    assert left == {other_candidate, other_tenant}
    assert erasures == 2
    assert [d["interviews"] for d in logged] == [2, 0]


def test_the_sweep_removes_unfinished_expired_and_erased_folders(tmp_path, media_dir):
    video = (media_dir / "single_face.mp4").read_bytes()
    settings = RetentionSettings(default_days=30, upload_max_age_days=7)

    async def scenario():
        async with harness(tmp_path) as h:
            fresh, stale, erased = [await h.create() for _ in range(3)]
            for interview_id in (fresh, stale):
                assert (await h.put(interview_id, video)).status_code == 200
            manifest = h.desk.root / stale / "manifest.json"
            data = json.loads(manifest.read_text())
            data["created_at"] = time.time() - 8 * 86400  # never completed, 8 days old
            manifest.write_text(json.dumps(data))
            with h.sessions.begin() as session:
                session.add(Failure(interview_id=erased, tenant="acme", reason="erased"))
            job = RetentionJob(h.sessions, settings, database=False, media=h.desk, audit=AuditTrail(h.sessions))
            dry = await job.run_once(dry_run=True)
            dry_folders = set(h.desk.folder_ids())
            done = await job.run_once()
            with h.sessions() as session:
                purges = session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "media.purge")).all()
            return fresh, stale, erased, dry, dry_folders, done, set(h.desk.folder_ids()), purges

    fresh, stale, erased, dry, dry_folders, done, folders, purges = asyncio.run(scenario())
    assert dry.removed["media_folders"] == 2 and dry_folders == {fresh, stale, erased}
    assert done.removed["media_folders"] == 2 and done.removed["media_files"] == dry.removed["media_files"] == 3
    assert folders == {fresh}
    assert purges == [{"removed": {"media_folders": 2, "media_files": 3}}]
