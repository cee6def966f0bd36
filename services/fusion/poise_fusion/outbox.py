"""The shape every outbound notifier shares: follow score events, send what is due, retry.

A subclass turns score events into rows (its outbox, in the database, so nothing is lost
when the process dies) and sends the rows that are due; this base owns the subscription,
the HTTP client and the polling loop. The client sends only to public addresses, checked when
each request is sent (:mod:`poise_common.outbound_urls`), unless ``allow_private``.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time

import httpx

from poise_common.bus import Bus, Subscription
from poise_common.messages import Envelope, Topics
from poise_common.outbound_urls import outbound_client
from poise_common.runtime import exception_summary

log = logging.getLogger(__name__)


class OutboxSender(abc.ABC):
    group: str  # the consumer group that follows scorecards.v1 for this sender
    # Retries wait backoff_s after the first failure, doubling per failure, at most max_backoff_s.
    backoff_s: float
    max_backoff_s: float

    def __init__(self, bus: Bus, *, timeout_s: float, poll_s: float, allow_private: bool = False) -> None:
        self.bus = bus
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.poll_s = poll_s
        self._subscription: Subscription | None = None
        self._loop: asyncio.Task | None = None
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = outbound_client(timeout_s=self.timeout_s, allow_private=self.allow_private)
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
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a database hiccup
                # The kinds and places only: an exception's text can quote a row (a database
                # error's parameters, an email address), and rows hold personal data.
                log.error("%s round failed", self.group, extra={"error": exception_summary(exc)})
            await asyncio.sleep(self.poll_s)
