"""Score events for live subscribers (server-sent events), fanned out per tenant.

The hub follows ``scorecards.v1`` from "now" with a group of its own (every replica sees
every event) and hands each event to the open streams of its tenant. A subscriber that does
not keep up loses the oldest events rather than slowing scoring down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from poise_common.bus import Bus, Subscription
from poise_common.messages import Envelope, ScoreEvent, Topics

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
KEEPALIVE_S = 15.0


def event_summary(env: Envelope) -> dict:
    """What a subscriber gets: enough to act on, without the whole scorecard."""
    event: ScoreEvent = env.payload
    card = event.scorecard or {}
    summary = {"type": event.type, "interview_id": env.interview_id, "created_at": env.created_at}
    if event.type == "answer.scored":
        summary["answer_id"] = env.answer_id
        summary["question_id"] = card.get("question_id")
    if event.type == "interview.scored":
        summary["model_version"] = card.get("model_version")
        competencies = card.get("competencies", [])
        # null where there was too little evidence to score; also named in a list of their own,
        # for clients whose maps cannot hold a null (gRPC's map<string, double>).
        summary["competencies"] = {c["name"]: c["score"] for c in competencies}
        summary["insufficient_evidence"] = [c["name"] for c in competencies if c["score"] is None]
    if event.type == "interview.failed":
        summary["error"] = event.error
    return summary


@dataclass(eq=False)  # identity, not value: each open stream is its own listener
class _Listener:
    tenant: str
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


class EventHub:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._listeners: set[_Listener] = set()
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe(
            [Topics.SCORECARDS], f"events-{uuid.uuid4().hex[:12]}", self._dispatch, from_latest=True
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()

    async def _dispatch(self, env: Envelope) -> None:
        if not isinstance(env.payload, ScoreEvent):
            return
        summary = None
        for listener in list(self._listeners):
            if listener.tenant != env.tenant:
                continue
            summary = summary or event_summary(env)
            if listener.queue.full():
                listener.queue.get_nowait()  # a slow reader loses the oldest, never blocks scoring
            listener.queue.put_nowait(summary)

    async def events(self, tenant: str, idle_s: float | None = None) -> AsyncIterator[dict | None]:
        """``tenant``'s event summaries as they come, until the caller stops iterating.

        Yields None first, once the subscription is in place (every event after that is
        delivered), then again after each ``idle_s`` without an event, so that a caller can
        tell its client it is live.
        """
        listener = _Listener(tenant)
        self._listeners.add(listener)
        try:
            yield None
            while True:
                try:
                    yield await asyncio.wait_for(listener.queue.get(), idle_s)
                except asyncio.TimeoutError:
                    yield None
        finally:
            self._listeners.discard(listener)

    async def stream(self, tenant: str) -> AsyncIterator[str]:
        """Server-sent events for ``tenant`` until the client goes away."""
        connected = False
        # aclosing: the listener goes as soon as the client does, not when the generator is collected.
        async with contextlib.aclosing(self.events(tenant, KEEPALIVE_S)) as summaries:
            async for summary in summaries:
                if summary is None:
                    yield ": keep-alive\n\n" if connected else ": connected\n\n"
                    connected = True
                    continue
                yield f"event: {summary['type']}\ndata: {json.dumps(summary)}\n\n"
