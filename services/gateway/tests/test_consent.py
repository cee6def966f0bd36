"""Candidate consent at the gateway: recorded at creation, required at complete for a us-il tenant."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from fastapi import FastAPI

from poise_common.auth import KeyStore
from poise_common.bus.memory import MemoryBus
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.grpc_api.poise.v1 import scoring_pb2 as pb
from poise_common.grpc_api.poise.v1 import scoring_pb2_grpc as pb_grpc
from poise_common.grpc_api.server import GrpcServer, ScoringServicer
from poise_common.messages import Envelope, InterviewOpened, Topics
from poise_common.settings import PoiseSettings
from poise_fusion.policy import TenantPolicyStore
from poise_gateway.api import UploadDesk, create_router
from poise_gateway.candidate import InvitationSigner, create_candidate_router, notice_version
from poise_gateway.service import Gateway

QUESTIONS = [{"question_id": "q1", "text": "Why this role?"}]
CONSENT_ISO = {"given_at": "2025-03-01T09:30:00Z", "notice_version": "il-2025-01"}


class Desk:
    """The upload API of one gateway, with an API key per tenant (``illinois`` is us-il)."""

    def __init__(self, clients: dict[str, httpx.AsyncClient], bus: MemoryBus, desk: UploadDesk, keys: dict) -> None:
        self.clients, self.bus, self.desk, self.keys = clients, bus, desk, keys

    async def upload(self, tenant: str, media: Path, **extra) -> tuple[str, httpx.AsyncClient]:
        client = self.clients[tenant]
        created = await client.post("/v1/interviews", json={"questions": QUESTIONS, **extra})
        assert created.status_code == 201, created.text
        interview_id = created.json()["interview_id"]
        put = await client.put(f"/v1/interviews/{interview_id}/answers/q1", content=media.read_bytes())
        assert put.status_code == 200, put.text
        return interview_id, client

    async def published(self) -> list[Envelope]:
        return [Envelope.from_bytes(r) for topic in (Topics.MEDIA_CONTROL, Topics.MEDIA_FRAMES, Topics.MEDIA_AUDIO)
                for r in await self.bus.read_all(topic)]


@asynccontextmanager
async def gateway(tmp_path: Path):
    settings = PoiseSettings(home=tmp_path / "home")
    engine = create_db_engine(f"sqlite:///{tmp_path / 'poise.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    policies = TenantPolicyStore(sessions, ttl_s=0)
    policies.set("illinois", "us-il")
    bus = MemoryBus()
    await bus.start()
    desk = UploadDesk(settings.media_dir, Gateway(bus, settings.gateway), settings.gateway,
                      default_role="generic", policies=policies)
    desk.prepare()
    keys = KeyStore(sessions)
    app = FastAPI()
    app.include_router(create_router(desk, settings, keys))
    app.include_router(create_candidate_router(desk, InvitationSigner(b"k" * 32, 3600), keys, "http://gateway"))
    transport = httpx.ASGITransport(app=app)
    tokens = {t: keys.create(t, ["interviews:write"]) for t in ("illinois", "acme")}
    clients = {t: httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60,
                                    headers={"Authorization": f"Bearer {token}"}) for t, token in tokens.items()}
    try:
        yield Desk(clients, bus, desk, tokens)
    finally:
        for client in clients.values():
            await client.aclose()
        await bus.stop()
        engine.dispose()


def test_us_il_without_consent_is_409_and_nothing_is_published(tmp_path, media_dir):
    async def scenario():
        async with gateway(tmp_path) as g:
            interview_id, client = await g.upload("illinois", media_dir / "single_face.mp4")
            refused = await client.post(f"/v1/interviews/{interview_id}/complete")
            manifest = json.loads((g.desk.root / interview_id / "manifest.json").read_text())
            files = sorted(p.suffix for p in (g.desk.root / interview_id).iterdir())
            return refused, await g.published(), manifest, files

    refused, published, manifest, files = asyncio.run(scenario())
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "consent_required" and "us-il" in error["message"]
    assert published == []
    assert manifest["status"] == "open" and manifest["consent"] is None
    assert files == [".json", ".media"]  # the answer waits; it is not analysed


def test_us_il_with_consent_publishes_it_in_the_announcement(tmp_path, media_dir):
    async def scenario():
        async with gateway(tmp_path) as g:
            interview_id, client = await g.upload("illinois", media_dir / "single_face.mp4", consent=CONSENT_ISO)
            done = await client.post(f"/v1/interviews/{interview_id}/complete")
            return done, await g.published()

    done, published = asyncio.run(scenario())
    assert done.status_code == 202, done.text
    opened = [e for e in published if isinstance(e.payload, InterviewOpened)]
    assert len(opened) == 1 and opened[0].tenant == "illinois"
    assert opened[0].payload.consent.model_dump() == {"given_at": 1740821400.0, "notice_version": "il-2025-01"}
    assert len(published) > 10  # the frames and audio followed


def test_a_us_il_candidate_consents_on_the_candidate_page_then_the_interview_completes(tmp_path, media_dir):
    async def scenario():
        async with gateway(tmp_path) as g:
            interview_id, client = await g.upload("illinois", media_dir / "single_face.mp4")
            link = (await client.post(f"/v1/interviews/{interview_id}/invitation")).json()["url"]
            query = link.split("?", 1)[1]
            page = httpx.AsyncClient(transport=client._transport, base_url="http://gateway", timeout=60)
            api = f"/candidate/api/{interview_id}"
            before = (await page.get(f"{api}?{query}")).json()
            stale = await page.post(f"{api}/consent?{query}", json={"notice_version": "an-old-page"})
            forged = await page.post(f"{api}/consent?t=forged", json={"notice_version": before["notice_version"]})
            refused = await client.post(f"/v1/interviews/{interview_id}/complete")
            given = await page.post(f"{api}/consent?{query}", json={"notice_version": before["notice_version"]})
            after = (await page.get(f"{api}?{query}")).json()
            done = await page.post(f"{api}/complete?{query}")
            late = await page.post(f"{api}/consent?{query}", json={"notice_version": before["notice_version"]})
            await page.aclose()
            return before, stale, forged, refused, given, after, done, late, await g.published()

    before, stale, forged, refused, given, after, done, late, published = asyncio.run(scenario())
    assert before["consented"] is False and before["notice_version"] == notice_version()
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "notice_changed"
    assert forged.status_code == 403
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "consent_required"
    assert given.status_code == 200, given.text
    assert after["consented"] is True
    assert done.status_code == 202, done.text
    assert late.status_code == 409  # submitted: the interview no longer changes
    opened = [e for e in published if isinstance(e.payload, InterviewOpened)]
    assert len(opened) == 1 and opened[0].payload.consent.notice_version == notice_version()
    assert abs(opened[0].payload.consent.given_at - given.json()["given_at"]) < 1e-6


def test_other_policies_need_no_consent(tmp_path, media_dir):
    async def scenario():
        async with gateway(tmp_path) as g:
            interview_id, client = await g.upload("acme", media_dir / "single_face.mp4")
            done = await client.post(f"/v1/interviews/{interview_id}/complete")
            return done, await g.published()

    done, published = asyncio.run(scenario())
    assert done.status_code == 202
    opened = [e for e in published if isinstance(e.payload, InterviewOpened)]
    assert opened[0].payload.consent is None


@pytest.mark.parametrize(
    ("consent", "problem"),
    [
        ({"given_at": "2025-03-01T09:30:00", "notice_version": "v1"}, "time zone"),
        ({"given_at": "last tuesday", "notice_version": "v1"}, "ISO-8601"),
        ({"given_at": 4102444800, "notice_version": "v1"}, "future"),
        ({"given_at": 1740821400, "notice_version": ""}, "notice_version"),
        ({"given_at": 1740821400, "notice_version": "v1", "signature": "x"}, "signature"),
    ],
)
def test_a_malformed_consent_is_refused_at_creation(tmp_path, consent, problem):
    async def scenario():
        async with gateway(tmp_path) as g:
            return await g.clients["illinois"].post("/v1/interviews", json={"questions": QUESTIONS, "consent": consent})

    response = asyncio.run(scenario())
    assert response.status_code == 422
    assert problem in response.text


def test_grpc_records_consent_and_refuses_completion_without_it(tmp_path, media_dir):
    async def scenario():
        async with gateway(tmp_path) as g:
            keys = KeyStore(g.desk.policies.sessions)
            server = GrpcServer(ScoringServicer(keys, desk=g.desk), "127.0.0.1", 0)
            await server.start()
            metadata = (("authorization", f"Bearer {g.keys['illinois']}"),)
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                    stub = pb_grpc.ScoringServiceStub(channel)
                    ids = []
                    for consent in (pb.Consent(**CONSENT_ISO), None):
                        request = pb.CreateInterviewRequest(
                            questions=[pb.Question(**q) for q in QUESTIONS], consent=consent)
                        ids.append((await stub.CreateInterview(request, metadata=metadata)).interview_id)
                    manifests = [json.loads((g.desk.root / i / "manifest.json").read_text()) for i in ids]
                    await g.clients["illinois"].put(f"/v1/interviews/{ids[1]}/answers/q1",
                                                    content=(media_dir / "single_face.mp4").read_bytes())
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await stub.CompleteInterview(pb.CompleteInterviewRequest(interview_id=ids[1]),
                                                     metadata=metadata)
            finally:
                await server.stop()
            return manifests, refused.value

    manifests, refused = asyncio.run(scenario())
    assert manifests[0]["consent"] == {"given_at": 1740821400.0, "notice_version": "il-2025-01"}
    assert manifests[1]["consent"] is None
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert ("poise-error-code", "consent_required") in tuple(refused.trailing_metadata())
