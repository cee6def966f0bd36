"""Playback of published answers: kept after publishing, served with ranges (decrypted on the way
out when stored encrypted), to readers of the tenant or holders of a media link only."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from poise_common.audit_trail import AuditTrail
from poise_common.auth import KeyStore, Principal
from poise_common.bus.memory import MemoryBus
from poise_common.crypto import CryptoError, KeyRing, LocalMasterKey, MasterKeys
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.db.models import AuditEvent
from poise_common.settings import PoiseSettings
from poise_gateway.api import ApiError, UploadDesk, create_router
from poise_gateway.media_api import MediaLinks, RangeNotSatisfiable, byte_range, create_media_router, plaintext_range
from poise_gateway.media_vault import MediaVault
from poise_gateway.service import Gateway

QUESTIONS = [{"question_id": "q 1+é", "text": "Tell me about a time you disagreed with a colleague."}]
QUESTION_PATH = "q%201%2B%C3%A9"  # a question id with a space, a plus and an accent, as a browser quotes it
SECRET = b"s" * 32


@dataclass
class Harness:
    client: httpx.AsyncClient
    desk: UploadDesk
    sessions: object
    keys: KeyStore

    def auth(self, tenant: str, scopes: list[str]) -> dict:
        return {"Authorization": f"Bearer {self.keys.create(tenant, scopes)}"}

    async def published(self, video: bytes, tenant: str = "acme") -> str:
        writer = self.auth(tenant, ["interviews:write"])
        created = await self.client.post("/v1/interviews", json={"questions": QUESTIONS}, headers=writer)
        interview_id = created.json()["interview_id"]
        stored = await self.client.put(f"/v1/interviews/{interview_id}/answers/{QUESTION_PATH}", content=video,
                                       headers=writer)
        assert stored.status_code == 200, stored.text
        done = await self.client.post(f"/v1/interviews/{interview_id}/complete", headers=writer)
        assert done.status_code == 202, done.text
        return interview_id

    def media_url(self, interview_id: str) -> str:
        return f"/v1/interviews/{interview_id}/answers/{QUESTION_PATH}/media"

    def audited(self, purpose: str) -> list[AuditEvent]:
        with self.sessions() as session:
            reads = session.scalars(select(AuditEvent).where(AuditEvent.action == "media.read"))
            return [r for r in reads if r.detail["purpose"] == purpose]


@asynccontextmanager
async def harness(tmp_path: Path, *, encrypted: bool = True) -> AsyncIterator[Harness]:
    settings = PoiseSettings(home=tmp_path / "home")
    engine = create_db_engine(f"sqlite:///{tmp_path / 'poise.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    audit = AuditTrail(sessions)
    vault = None
    if encrypted:
        vault = MediaVault(KeyRing(sessions, MasterKeys([LocalMasterKey("test", bytes(range(32)))])),
                           settings.media_dir / ".clear", audit)
    bus = MemoryBus()
    await bus.start()
    desk = UploadDesk(settings.media_dir, Gateway(bus, settings.gateway), settings.gateway, default_role="generic",
                      vault=vault)
    desk.prepare()
    keys = KeyStore(sessions)
    app = FastAPI()
    app.include_router(create_router(desk, settings, keys))
    app.include_router(create_media_router(desk, keys, MediaLinks(SECRET), audit))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                     timeout=60) as client:
            yield Harness(client, desk, sessions, keys)
    finally:
        await bus.stop()
        engine.dispose()


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "clear"])
def test_published_media_is_kept_and_served_whole_and_by_range(tmp_path, media_dir, encrypted):
    video = (media_dir / "single_face.mp4").read_bytes()
    middle = len(video) // 2

    async def scenario():
        async with harness(tmp_path, encrypted=encrypted) as h:
            interview_id = await h.published(video)
            reader = h.auth("acme", ["scores:read"])
            url = h.media_url(interview_id)
            whole = await h.client.get(url, headers=reader)
            part = await h.client.get(url, headers={**reader, "Range": f"bytes={middle}-{middle + 999}"})
            tail = await h.client.get(url, headers={**reader, "Range": "bytes=-100"})
            rest = await h.client.get(url, headers={**reader, "Range": f"bytes={len(video) - 10}-"})
            outside = await h.client.get(url, headers={**reader, "Range": f"bytes={len(video)}-"})
            h.desk.prepare()  # a restart keeps what the manifest names
            again = await h.client.get(url, headers={**reader, "Range": "bytes=0-99"})
            return whole, part, tail, rest, outside, again, h.audited("playback")

    whole, part, tail, rest, outside, again, reads = asyncio.run(scenario())
    assert whole.status_code == 200 and whole.content == video
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-type"] == "video/mp4"
    assert "no-store" in whole.headers["cache-control"]
    assert part.status_code == 206 and part.content == video[middle : middle + 1000]
    assert part.headers["content-range"] == f"bytes {middle}-{middle + 999}/{len(video)}"
    assert tail.status_code == 206 and tail.content == video[-100:]
    assert rest.status_code == 206 and rest.content == video[-10:]
    assert outside.status_code == 416 and outside.headers["content-range"] == f"bytes */{len(video)}"
    assert again.status_code == 206 and again.content == video[:100]
    # Playback from the start is audited (the whole file and the range from 0), not every seek.
    assert len(reads) == 2 and all(r.tenant == "acme" and r.interview_id for r in reads)


def test_a_media_link_opens_one_answer_for_a_while_and_nothing_else(tmp_path, media_dir):
    video = (media_dir / "single_face.mp4").read_bytes()

    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.published(video)
            other_id = await h.published(video)
            reader = h.auth("acme", ["scores:read"])
            link = await h.client.post(h.media_url(interview_id) + "/link", headers=reader)
            token = link.json()["token"]
            by_link = await h.client.get(h.media_url(interview_id), params={"t": token},
                                         headers={"Range": "bytes=0-1023"})
            wrong_answer = await h.client.get(h.media_url(other_id), params={"t": token})
            forged = await h.client.get(h.media_url(interview_id), params={"t": token[:-2] + "AA"})
            writer_only = await h.client.post(h.media_url(interview_id) + "/link",
                                              headers=h.auth("acme", ["interviews:write"]))
            theirs = await h.client.get(h.media_url(interview_id), headers=h.auth("globex", ["scores:read"]))
            their_link = await h.client.post(h.media_url(interview_id) + "/link",
                                             headers=h.auth("globex", ["scores:read"]))
            anonymous = await h.client.get(h.media_url(interview_id))
            await h.desk.erase(interview_id)
            erased = await h.client.get(h.media_url(interview_id), params={"t": token})
            return link, by_link, wrong_answer, forged, writer_only, theirs, their_link, anonymous, erased, \
                h.audited("playback link")

    link, by_link, wrong_answer, forged, writer_only, theirs, their_link, anonymous, erased, links = (
        asyncio.run(scenario()))
    assert link.status_code == 200 and link.json()["expires_at"] > 0
    assert by_link.status_code == 206 and by_link.content == video[:1024]
    assert wrong_answer.status_code == 403 and wrong_answer.json()["error"]["code"] == "link_invalid"
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "link_invalid"
    assert writer_only.status_code == 403
    assert theirs.status_code == 404 and their_link.status_code == 404  # another tenant's does not exist
    assert anonymous.status_code == 401
    assert erased.status_code == 404
    assert len(links) == 1 and links[0].tenant == "acme"


def test_media_links_expire_and_name_their_holder():
    links = MediaLinks(SECRET, valid_s=60)
    caller = Principal(tenant="acme", scopes=frozenset({"scores:read"}), key_id="k1")
    token, expires = links.token("i1", "q1", caller, now=1000)
    assert expires == 1060
    assert links.holder("i1", "q1", token, now=1059) == Principal("acme", frozenset({"scores:read"}), "k1")
    with pytest.raises(ApiError) as expired:
        links.holder("i1", "q1", token, now=1060)
    assert expired.value.code == "link_expired"
    with pytest.raises(ApiError) as other_key:
        MediaLinks(b"t" * 32).holder("i1", "q1", token, now=1000)
    assert other_key.value.code == "link_invalid"
    for garbage in ("", "...", "1.2.3", "9" * 30 + ".e30.x", f"{token[:-3]}é€x", "1.WyJhIl0.sig", "1.bnVsbA.sig"):
        with pytest.raises(ApiError) as refused:
            links.holder("i1", "q1", garbage, now=1000)
        assert refused.value.code == "link_invalid", garbage


def test_byte_ranges_follow_rfc_9110():
    assert byte_range(None, 100) is None
    assert byte_range("bytes=0-", 100) == (0, 99)
    assert byte_range("bytes=10-19", 100) == (10, 19)
    assert byte_range("bytes=90-500", 100) == (90, 99)
    assert byte_range("bytes=-30", 100) == (70, 99)
    assert byte_range("bytes=-300", 100) == (0, 99)
    assert byte_range("bytes=0-1,5-9", 100) is None  # several ranges: the whole file
    assert byte_range("items=0-1", 100) is None
    assert byte_range("bytes=" + "9" * 5000 + "-", 100) is None  # not a range this server reads
    for unsatisfiable in ("bytes=100-", "bytes=20-10", "bytes=-0"):
        with pytest.raises(RangeNotSatisfiable):
            byte_range(unsatisfiable, 100)


def test_ranges_of_an_encrypted_stream_across_chunks_and_reads(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    upgrade(engine)
    ring = KeyRing(session_factory(engine), MasterKeys([LocalMasterKey("test", bytes(range(32)))]))
    plain = os.urandom(10_000)
    encryptor = ring.stream_encryptor("acme", b"answer", chunk_bytes=1024)
    sealed = tmp_path / "answer.media"
    sealed.write_bytes(encryptor.update(plain) + encryptor.finalize())
    for first, last in [(0, 9999), (0, 0), (1023, 1024), (3000, 7777), (9990, 9999), (5120, 6143)]:
        got = b"".join(plaintext_range(sealed, first, last, ring.stream_decryptor("acme", b"answer"), block=777))
        assert got == plain[first : last + 1], (first, last)
    with pytest.raises(CryptoError):  # another answer's binding does not decrypt
        b"".join(plaintext_range(sealed, 0, 99, ring.stream_decryptor("acme", b"other"), block=777))
    engine.dispose()
