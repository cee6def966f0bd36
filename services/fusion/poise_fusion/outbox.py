"""The shape every outbound notifier shares: follow score events, send what is due, retry.

A subclass turns score events into rows (its outbox, in the database, so nothing is lost
when the process dies) and sends the rows that are due; this base owns the subscription,
the HTTP client and the polling loop.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time

import httpx

from poise_common.bus import Bus, Subscription
from poise_common.messages import Envelope, Topics

log = logging.getLogger(__name__)


class OutboxSender(abc.ABC):
    group: str  # the consumer group that follows scorecards.v1 for this sender
    # Retries wait backoff_s after the first failure, doubling per failure, at most max_backoff_s.
    backoff_s: float
    max_backoff_s: float

    def __init__(self, bus: Bus, *, timeout_s: float, poll_s: float) -> None:
        self.bus = bus
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._subscription: Subscription | None = None
        self._loop: asyncio.Task | None = None
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        self._subscription = await self.bus.subscribe([Topics.SCORECARDS], self.group, self.on_event)
        self._loop = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close(drain=True)
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError(f"{type(self).__name__}.start() has not been awaited")
        return self._client

    def backoff(self, attempts: int) -> float:
        """Delay after the ``attempts``-th failure (1-based)."""
        return min(self.max_backoff_s, self.backoff_s * (2 ** min(attempts - 1, 32)))

    @abc.abstractmethod
    async def on_event(self, env: Envelope) -> None:
        """Record what this event obliges us to send (idempotently: events may repeat)."""

    @abc.abstractmethod
    def due(self, now: float) -> list[tuple]:
        """The rows whose next attempt is due (runs in a thread)."""

    @abc.abstractmethod
    async def send(self, *row) -> None:
        """Try one row once and record the outcome."""

    async def _run(self) -> None:
        while True:
            try:
                due = await asyncio.to_thread(self.due, time.time())
                await asyncio.gather(*(self.send(*row) for row in due))
            except Exception:  # noqa: BLE001 - the loop must outlive a database hiccup
                log.exception("%s round failed", self.group)
            await asyncio.sleep(self.poll_s)
