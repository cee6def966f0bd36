"""The gateway's uploads in the audit log: through the REST API with the key's id as actor, and through
the candidate page as ``candidate-link``; a gateway that cannot write the log refuses the request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlparse

import httpx
from fastapi import FastAPI

from poise_common.audit_trail import AuditTrail, entries, verify
from poise_common.auth import KeyStore
from poise_common.bus.memory import MemoryBus
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.settings import PoiseSettings
from poise_gateway.api import NewInterview, UploadDesk, create_router
from poise_gateway.candidate import InvitationSigner, create_candidate_router, notice_version
from poise_gateway.service import Gateway

SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sample_interview.mp4"
QUESTIONS = [{"question_id": "q1", "text": "Why this role?"}]
SIGNER = InvitationSigner(b"s" * 32, 3600)


@asynccontextmanager
async def gateway(tmp_path: Path, trail: AuditTrail, keys: KeyStore
                  ) -> AsyncIterator[tuple[httpx.AsyncClient, UploadDesk]]:
    """The upload and candidate routes with ``trail``, on a memory bus; a client without a key."""
    settings = PoiseSettings(home=tmp_path / "home")
    bus = MemoryBus()
    await bus.start()
    desk = UploadDesk(settings.media_dir, Gateway(bus, settings.gateway), settings.gateway, default_role="generic")
    desk.prepare()
    app = FastAPI()
    app.include_router(create_router(desk, settings, keys, trail))
    app.include_router(create_candidate_router(desk, SIGNER, keys, "http://gw", trail))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                     timeout=120) as client:
            yield client, desk
    finally:
        await bus.stop()


def database(path: Path):
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


def rest_uploads(tmp_path: Path, trail: AuditTrail, keys: KeyStore) -> tuple[list[tuple[str, int]], str]:
    """Create, upload and complete through the REST API: each call's (name, status), and the key's id."""
    key = keys.create("acme", ["interviews:write"])
    statuses: list[tuple[str, int]] = []

    async def scenario() -> None:
        async with gateway(tmp_path, trail, keys) as (client, _):
            client.headers["Authorization"] = f"Bearer {key}"
            created = await client.post("/v1/interviews", json={"questions": QUESTIONS})
            statuses.append(("create", created.status_code))
            if created.status_code != 201:
                return
            interview_id = created.json()["interview_id"]
            upload = await client.put(f"/v1/interviews/{interview_id}/answers/q1", content=SAMPLE.read_bytes())
            statuses.append(("upload", upload.status_code))
            done = await client.post(f"/v1/interviews/{interview_id}/complete")
            statuses.append(("complete", done.status_code))

    asyncio.run(scenario())
    return statuses, key.split("_")[1]


def test_uploads_are_recorded_with_the_key_as_actor(tmp_path):
    engine = database(tmp_path / "poise.db")
    sessions = session_factory(engine)
    statuses, key_id = rest_uploads(tmp_path, AuditTrail(sessions), KeyStore(sessions))
    assert statuses == [("create", 201), ("upload", 200), ("complete", 202)]
    found = list(entries(sessions))
    interview_id = found[0]["interview_id"]
    assert [(e["action"], e["actor"], e["interview_id"]) for e in found] == [
        ("interview.create", key_id, interview_id),
        ("answer.upload", key_id, interview_id),
        ("interview.complete", key_id, interview_id),
    ]
    assert found[1]["detail"] == {"via": "rest", "question_id": "q1", "bytes": SAMPLE.stat().st_size}
    engine.dispose()


def test_a_gateway_that_cannot_write_the_log_refuses(tmp_path):
    engine = database(tmp_path / "poise.db")
    # The log's database lacks its table: every append fails, as in an outage.
    unmigrated = create_db_engine(f"sqlite:///{tmp_path / 'unmigrated.db'}")
    statuses, _ = rest_uploads(tmp_path, AuditTrail(session_factory(unmigrated)), KeyStore(session_factory(engine)))
    assert statuses == [("create", 503)]
    engine.dispose()
    unmigrated.dispose()


def test_the_candidate_page_is_recorded_as_the_candidate_link(tmp_path):
    engine = database(tmp_path / "poise.db")
    sessions = session_factory(engine)

    async def scenario() -> str:
        async with gateway(tmp_path, AuditTrail(sessions), KeyStore(sessions)) as (client, desk):
            interview_id = await desk.create(NewInterview(questions=QUESTIONS), "acme")
            query = urlparse(SIGNER.link("http://gw", interview_id, "acme")).query
            base = f"/candidate/api/{interview_id}"
            consent = await client.post(f"{base}/consent?{query}", json={"notice_version": notice_version()})
            upload = await client.put(f"{base}/answers/q1?{query}", content=SAMPLE.read_bytes())
            done = await client.post(f"{base}/complete?{query}")
            assert (consent.status_code, upload.status_code, done.status_code) == (200, 200, 202)
            return interview_id

    interview_id = asyncio.run(scenario())
    found = list(entries(sessions))
    assert [(e["action"], e["actor"], e["tenant"], e["interview_id"]) for e in found] == [
        ("consent.record", "candidate-link", "acme", interview_id),
        ("answer.upload", "candidate-link", "acme", interview_id),
        ("interview.complete", "candidate-link", "acme", interview_id),
    ]
    assert found[0]["detail"] == {"via": "candidate-page", "notice_version": notice_version()}
    assert verify(sessions).ok
    engine.dispose()
