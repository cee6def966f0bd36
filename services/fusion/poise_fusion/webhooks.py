"""Webhooks: tenants' URLs receive score events, signed, retried with backoff, logged, replayable.

Each delivery is a row: created idempotently from the ``scorecards.v1`` event (a replayed
event finds its row already there), sent by the dispatcher loop, and updated with every
attempt's outcome. The signature header is ``Poise-Signature: t=<unix seconds>,v1=<hex>`` where
``v1`` is HMAC-SHA256 with the webhook's secret over ``"<t>." + body``; receivers recompute it
and reject old timestamps to stop replays by third parties.

Webhook URLs go only to public addresses (``fusion.allow_private_targets`` lifts this for a
single-host install): checked at registration, and again at each delivery, whose host is
resolved then; a delivery refused at that point fails at once, without a connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from poise_common.bus import Bus
from poise_common.db.models import Webhook, WebhookDelivery
from poise_common.messages import Envelope, ScoreEvent
from poise_common.outbound_urls import UnsafeUrl, check_url
from poise_common.settings import FusionSettings
from poise_fusion.events import event_summary
from poise_fusion.outbox import OutboxSender

log = logging.getLogger(__name__)

EVENT_TYPES = ("answer.scored", "interview.scored", "interview.failed")
SIGNATURE_HEADER = "Poise-Signature"


class WebhookError(ValueError):
    pass


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None, tolerance_s: float = 300) -> bool:
    """What a receiver does: recompute the signature and refuse stale timestamps."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def _delivery_view(d: WebhookDelivery) -> dict:
    return {"delivery_id": d.id, "webhook_id": d.webhook_id, "event_type": d.event_type,
            "interview_id": d.interview_id, "status": d.status, "attempts": d.attempts,
            "last_status_code": d.last_status_code, "last_error": d.last_error,
            "created_at": d.created_at, "delivered_at": d.delivered_at}


class WebhookStore:
    """The tenants' webhooks and their deliveries; ``allow_private`` accepts non-public targets."""

    def __init__(self, sessions: sessionmaker, *, allow_private: bool = False) -> None:
        self.sessions = sessions
        self.allow_private = allow_private

    def register(self, tenant: str, url: str, events: list[str] | None = None) -> dict:
        """Keep a webhook (blocking: the URL's host is resolved to check it); raises :class:`WebhookError`."""
        try:
            check_url(url, allow_private=self.allow_private)
        except UnsafeUrl as exc:
            raise WebhookError(f"the webhook URL is refused: {exc}") from None
        if events is not None and not events:
            # Omitted means every event; an empty list asks for none, which is no webhook at all.
            raise WebhookError(f"events must name at least one of {', '.join(EVENT_TYPES)} (omit it for all of them)")
        events = sorted(set(EVENT_TYPES if events is None else events))
        unknown = sorted(set(events) - set(EVENT_TYPES))
        if unknown:
            raise WebhookError(f"unknown event types: {', '.join(unknown)}")
        hook = Webhook(id=secrets.token_hex(8), tenant=tenant, url=url, secret=f"whsec_{secrets.token_urlsafe(32)}",
                       events=events)
        with self.sessions.begin() as session:
            session.add(hook)
        # The secret is returned once, like an API key; the receiver keeps it to verify signatures.
        return {"webhook_id": hook.id, "url": url, "events": events, "secret": hook.secret}

    def list(self, tenant: str) -> list[dict]:
        with self.sessions() as session:
            rows = session.scalars(select(Webhook).where(Webhook.tenant == tenant).order_by(Webhook.created_at))
            return [{"webhook_id": w.id, "url": w.url, "events": w.events, "created_at": w.created_at} for w in rows]

    def delete(self, tenant: str, webhook_id: str) -> bool:
        with self.sessions.begin() as session:
            hook = session.get(Webhook, webhook_id)
            if hook is None or hook.tenant != tenant:
                return False
            session.delete(hook)
            return True

    def enqueue(self, env: Envelope) -> int:
        """Create this event's deliveries (once per webhook, however often the event arrives)."""
        event: ScoreEvent = env.payload
        body = json.dumps(event_summary(env), sort_keys=True)
        created = 0
        with self.sessions() as session:
            hooks = [h for h in session.scalars(select(Webhook).where(Webhook.tenant == env.tenant))
                     if event.type in h.events]
        for hook in hooks:
            try:
                with self.sessions.begin() as session:
                    session.add(WebhookDelivery(
                        id=secrets.token_hex(8), webhook_id=hook.id, tenant=env.tenant, event_type=event.type,
                        interview_id=env.interview_id, answer_id=env.answer_id, body=body,
                    ))
                created += 1
            except IntegrityError:
                pass  # a replayed event: its delivery exists already
        return created

    def due(self, now: float, limit: int = 50) -> list[tuple[str, str, str, str, str, int]]:
        with self.sessions() as session:
            rows = session.execute(
                select(WebhookDelivery.id, Webhook.url, Webhook.secret, WebhookDelivery.body,
                       WebhookDelivery.event_type, WebhookDelivery.attempts)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
            ).all()
            return [tuple(r) for r in rows]

    def record(self, delivery_id: str, *, ok: bool, code: int | None, error: str | None,
               retry_at: float | None) -> None:
        with self.sessions.begin() as session:
            d = session.get(WebhookDelivery, delivery_id)
            if d is None:
                return
            d.attempts += 1
            d.last_status_code, d.last_error = code, error
            if ok:
                d.status, d.delivered_at = "delivered", time.time()
            elif retry_at is None:
                d.status = "failed"
            else:
                d.next_attempt_at = retry_at

    def deliveries(self, tenant: str, limit: int = 100) -> list[dict]:
        with self.sessions() as session:
            rows = session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.tenant == tenant)
                .order_by(WebhookDelivery.created_at.desc()).limit(limit)
            )
            return [_delivery_view(d) for d in rows]

    def replay(self, tenant: str, delivery_id: str) -> bool:
        with self.sessions.begin() as session:
            d = session.get(WebhookDelivery, delivery_id)
            if d is None or d.tenant != tenant:
                return False
            d.status, d.next_attempt_at, d.delivered_at = "pending", time.time(), None
            return True


class WebhookDispatcher(OutboxSender):
    """Turns score events into deliveries and sends the due ones, with exponential backoff."""

    group = "webhooks"

    def __init__(self, bus: Bus, store: WebhookStore, settings: FusionSettings, poll_s: float = 0.5) -> None:
        super().__init__(bus, timeout_s=settings.webhook_timeout_s, poll_s=poll_s,
                         allow_private=settings.allow_private_targets)
        self.store = store
        self.settings = settings

    async def on_event(self, env: Envelope) -> None:
        if isinstance(env.payload, ScoreEvent):
            await asyncio.to_thread(self.store.enqueue, env)

    def due(self, now: float) -> list[tuple]:
        return self.store.due(now)

    async def send(self, delivery_id: str, url: str, secret: str, body: str, event_type: str, attempts: int) -> None:
        data = body.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, int(time.time()), data),
            "Poise-Event": event_type,
            "Poise-Delivery": delivery_id,
        }
        code, error, retry = None, None, True
        try:
            response = await self.client.post(url, content=data, headers=headers)
            code = response.status_code
            ok = 200 <= code < 300
            if not ok:
                error = f"HTTP {code}"
        except httpx.HTTPError as exc:
            ok, error = False, type(exc).__name__
        except UnsafeUrl as exc:  # refused before connecting: a retry would be refused again
            ok, error, retry = False, f"refused: {exc}", False
        retry_at = None
        if not ok and retry and attempts + 1 < self.settings.webhook_max_attempts:
            retry_at = time.time() + self.settings.webhook_backoff_s * (2 ** attempts)
        log.info("webhook delivery", extra={"delivery": delivery_id, "ok": ok, "status_code": code})
        await asyncio.to_thread(self.store.record, delivery_id, ok=ok, code=code, error=error, retry_at=retry_at)
