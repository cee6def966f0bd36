"""Webhooks against a real local HTTP receiver: signatures, retries with backoff, replay, tenants,
and the refusal of non-public targets (the receivers here run on 127.0.0.1, so the tests that
deliver to them opt in with ``allow_private``, as a single-host install would)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from fastapi import FastAPI

from poise_common.auth import KeyStore
from poise_common.bus.memory import MemoryBus
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.messages import Envelope, ScoreEvent, Topics
from poise_common.settings import FusionSettings
from poise_fusion.webhook_api import create_webhook_router
from poise_fusion.webhooks import EVENT_TYPES, SIGNATURE_HEADER, WebhookDispatcher, WebhookStore, sign, verify


class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and fails the first ``failures``."""

    def __init__(self, failures: int = 0) -> None:
        self.requests: list[tuple[dict, bytes]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                status = 500 if len(receiver.requests) <= receiver.failures else 204
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


# The receivers listen on 127.0.0.1: a private target, allowed only when a deployment opts in.
PRIVATE_OK = FusionSettings(allow_private_targets=True)


@pytest.fixture()
def stores(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'poise.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    yield WebhookStore(sessions, allow_private=True), KeyStore(sessions)
    engine.dispose()


def scored(interview_id: str, tenant: str = "acme") -> Envelope:
    card = {"model_version": "generic@1.0+norms", "competencies": [{"name": "empathy", "score": 61.5}]}
    return Envelope(interview_id=interview_id, tenant=tenant, stream="score", seq=0,
                    payload=ScoreEvent(type="interview.scored", scorecard=card))


async def run_dispatcher(hooks: WebhookStore, events: list[Envelope], until, settings: FusionSettings) -> None:
    bus = MemoryBus()
    await bus.start()
    dispatcher = WebhookDispatcher(bus, hooks, settings, poll_s=0.05)
    await dispatcher.start()
    for env in events:
        await bus.publish(Topics.SCORECARDS, env)
    deadline = time.monotonic() + 30
    while not until() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await dispatcher.stop()
    await bus.stop()


def test_signed_delivery_once_per_event_and_only_to_the_tenant(stores):
    hooks, _ = stores
    mine, theirs = Receiver(), Receiver()
    secret = hooks.register("acme", mine.url)["secret"]
    hooks.register("globex", theirs.url)
    event = scored("iv1")
    # The event arrives twice (at-least-once): one delivery.
    asyncio.run(run_dispatcher(
        hooks, [event, event], lambda: [d["status"] for d in hooks.deliveries("acme")] == ["delivered"], PRIVATE_OK
    ))
    time.sleep(0.3)
    mine.close(), theirs.close()
    assert len(mine.requests) == 1 and theirs.requests == []
    headers, body = mine.requests[0]
    assert verify(secret, headers[SIGNATURE_HEADER], body)
    assert not verify("whsec_wrong", headers[SIGNATURE_HEADER], body)
    assert not verify(secret, headers[SIGNATURE_HEADER], body + b" ")
    payload = json.loads(body)
    assert payload["type"] == "interview.scored" and payload["competencies"] == {"empathy": 61.5}
    assert headers["Poise-Event"] == "interview.scored"
    [delivery] = hooks.deliveries("acme")
    assert delivery["status"] == "delivered" and delivery["attempts"] == 1


def test_failing_receiver_gets_retries_with_backoff_then_success(stores):
    hooks, _ = stores
    receiver = Receiver(failures=2)
    hooks.register("acme", receiver.url)
    settings = FusionSettings(webhook_backoff_s=0.2, webhook_max_attempts=5, allow_private_targets=True)
    # Until the store has the outcome: the receiver sees the third request before the dispatcher
    # has recorded its answer.
    asyncio.run(run_dispatcher(
        hooks, [scored("iv2")], lambda: [d["status"] for d in hooks.deliveries("acme")] in (["delivered"], ["failed"]), settings
    ))
    receiver.close()
    assert len(receiver.requests) == 3
    [delivery] = hooks.deliveries("acme")
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    # The same delivery each time (same id), and the body unchanged.
    assert len({h["Poise-Delivery"] for h, _ in receiver.requests}) == 1
    assert len({b for _, b in receiver.requests}) == 1


def test_gives_up_after_max_attempts_and_replay_sends_again(stores):
    hooks, _ = stores
    receiver = Receiver(failures=100)
    hooks.register("acme", receiver.url)
    settings = FusionSettings(webhook_backoff_s=0.05, webhook_max_attempts=3, allow_private_targets=True)
    asyncio.run(run_dispatcher(
        hooks, [scored("iv3")], lambda: [d["status"] for d in hooks.deliveries("acme")] == ["failed"], settings
    ))
    [failed] = hooks.deliveries("acme")
    assert failed["status"] == "failed" and failed["attempts"] == 3 and failed["last_status_code"] == 500
    receiver.failures = 0
    assert hooks.replay("acme", failed["delivery_id"])
    assert not hooks.replay("globex", failed["delivery_id"])  # not theirs
    asyncio.run(run_dispatcher(hooks, [], lambda: [d["status"] for d in hooks.deliveries("acme")] == ["delivered"], settings))
    receiver.close()
    assert hooks.deliveries("acme")[0]["status"] == "delivered"


def test_signature_format_and_stale_timestamps():
    header = sign("whsec_x", 1_700_000_000, b"{}")
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify("whsec_x", header, b"{}", now=1_700_000_100)
    assert not verify("whsec_x", header, b"{}", now=1_700_001_000)


def test_webhook_routes_need_admin_and_validate(stores):
    hooks, keys = stores
    app = FastAPI()
    app.include_router(create_webhook_router(hooks, keys))
    admin = {"Authorization": f"Bearer {keys.create('acme', ['admin'])}"}
    reader = {"Authorization": f"Bearer {keys.create('acme', ['scores:read'])}"}

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fusion") as client:
            created = await client.post("/v1/webhooks", json={"url": "https://ats.example/hook"}, headers=admin)
            refused = await client.post("/v1/webhooks", json={"url": "https://ats.example/hook"}, headers=reader)
            bad = await client.post("/v1/webhooks", json={"url": "ftp://x"}, headers=admin)
            listed = await client.get("/v1/webhooks", headers=admin)
            gone = await client.delete(f"/v1/webhooks/{created.json()['webhook_id']}", headers=admin)
            again = await client.delete(f"/v1/webhooks/{created.json()['webhook_id']}", headers=admin)
            return created, refused, bad, listed, gone, again

    created, refused, bad, listed, gone, again = asyncio.run(scenario())
    assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
    assert refused.status_code == 403 and bad.status_code == 422
    assert [h["url"] for h in listed.json()["items"]] == ["https://ats.example/hook"]
    assert "secret" not in listed.json()["items"][0]
    assert gone.status_code == 204 and again.status_code == 404


def admin_client(sessions) -> tuple[FastAPI, dict]:
    """The webhook routes on a store with the default (public targets only), and an admin's headers."""
    keys = KeyStore(sessions)
    app = FastAPI()
    app.include_router(create_webhook_router(WebhookStore(sessions), keys))
    return app, {"Authorization": f"Bearer {keys.create('acme', ['admin'])}"}


async def post_webhook(app: FastAPI, headers: dict, body: dict) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fusion") as client:
        return await client.post("/v1/webhooks", json=body, headers=headers)


# Each class of non-public address, as the server's own ports, the cloud metadata endpoint and the
# private network would be named.
REFUSED_TARGETS = [
    ("http://127.0.0.1:8765/metrics", "loopback"),
    ("http://127.0.0.1:1/", "loopback"),
    ("http://localhost:8000/v1/webhooks", "loopback"),
    ("http://[::1]:8000/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://10.0.0.7/hook", "private"),
    ("http://192.168.0.2/hook", "private"),
    ("http://0.0.0.0:8000/", "unspecified"),
    ("http://239.1.2.3/hook", "multicast"),
    ("http://240.0.0.1/hook", "reserved"),
]


@pytest.mark.parametrize(("url", "kind"), REFUSED_TARGETS)
def test_registering_a_non_public_target_is_a_422_that_stores_nothing(sessions, url, kind):
    app, admin = admin_client(sessions)
    response = asyncio.run(post_webhook(app, admin, {"url": url}))
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert message.startswith("the webhook URL is refused: its host") and f"a {kind} address" in message
    assert WebhookStore(sessions).list("acme") == []


def test_an_explicit_empty_event_list_is_a_422_not_every_event(sessions):
    app, admin = admin_client(sessions)
    empty = asyncio.run(post_webhook(app, admin, {"url": "https://ats.example/hook", "events": []}))
    assert empty.status_code == 422 and "at least one of" in empty.json()["error"]["message"]
    assert WebhookStore(sessions).list("acme") == []
    omitted = asyncio.run(post_webhook(app, admin, {"url": "https://ats.example/hook"}))
    assert omitted.status_code == 201 and omitted.json()["events"] == sorted(EVENT_TYPES)


@pytest.mark.parametrize(("host", "kind"), [
    ("localhost", "loopback"), ("127.0.0.1", "loopback"), ("169.254.169.254", "link-local"), ("10.0.0.7", "private"),
    ("0.0.0.0", "unspecified"), ("239.1.2.3", "multicast"), ("240.0.0.1", "reserved"),
])
def test_a_delivery_to_a_non_public_address_is_refused_when_sent_without_a_connection(sessions, host, kind):
    receiver = Receiver()
    port = receiver.server.server_address[1]
    # Registered while allowed (or while the name resolved elsewhere); the check at send time decides.
    WebhookStore(sessions, allow_private=True).register("acme", f"http://{host}:{port}/hook")
    hooks = WebhookStore(sessions)
    settings = FusionSettings(webhook_backoff_s=0.05, webhook_max_attempts=5)
    finished = (["failed"], ["delivered"])
    asyncio.run(run_dispatcher(hooks, [scored("iv9")], lambda: [d["status"] for d in hooks.deliveries("acme")] in finished,
                               settings))
    receiver.close()
    [delivery] = hooks.deliveries("acme")
    # Failed at the first attempt: a retry would be refused again.
    assert delivery["status"] == "failed" and delivery["attempts"] == 1 and delivery["last_status_code"] is None
    resolved = "resolves to" if host == "localhost" else "is"
    assert delivery["last_error"].startswith(f"refused: its host {resolved} a {kind} address")
    assert receiver.requests == []
