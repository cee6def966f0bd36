"""The bus interface every transport implements, and the delivery rules they share.

Rules (the contract suite in libs/common/tests checks them against every transport):
- one key (the interview id) always lands on one partition, so its messages stay in order;
- a consumer group sees every message once per group; members of a group share partitions;
- delivery is at-least-once: the offset is committed only after the handler returns;
- a handler that keeps failing is retried a bounded number of times, then the message goes
  to the group's dead-letter topic with the error, and the partition keeps flowing;
- a message that cannot be decoded is poison: it goes straight to the dead-letter topic;
- a handler may *hold* its record: the group's committed offset then stays at or before it
  until the hold is released, so a consumer that dies mid-answer replays the whole answer.
  Stateful stages (speech recognition needs the whole answer, face tracking needs the frames
  in order) hold an answer's first record and release it once the answer's result is out.
"""

from __future__ import annotations

import abc
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

from poise_common.bus.errors import ReplayFromHold, TransportUnavailable
from poise_common.messages import Envelope, Topics
from poise_common.metrics import BusMetrics, NullMetrics

log = logging.getLogger(__name__)

Handler = Callable[[Envelope], Awaitable[None]]


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard a consumer tries before it dead-letters a message."""

    max_attempts: int = 3
    backoff_s: float = 0.05
    backoff_max_s: float = 2.0

    def delay(self, attempt: int) -> float:
        return min(self.backoff_max_s, self.backoff_s * (2 ** (attempt - 1)))


class Hold:
    """Keeps a partition's committed offset at or before one record until released."""

    def __init__(self, cursor: "PartitionCursor", offset: int) -> None:
        self._cursor = cursor
        self.offset = offset

    def release(self) -> None:
        self._cursor.held.discard(self.offset)


@dataclass
class PartitionCursor:
    """Where a member stands in one partition: its next record and what it holds."""

    position: int
    held: set[int] = field(default_factory=set)

    def commit_point(self) -> int:
        return min(self.held, default=self.position)


@dataclass
class Delivery:
    """The record a handler is working on, for handlers that need to hold it."""

    topic: str
    partition: int
    offset: int
    cursor: PartitionCursor
    # Sends the handler started but the broker has not yet acknowledged; a transport that
    # publishes asynchronously awaits them before it commits this record.
    pending: list = field(default_factory=list)

    def hold(self) -> Hold:
        self.cursor.held.add(self.offset)
        return Hold(self.cursor, self.offset)


_delivery: ContextVar[Delivery | None] = ContextVar("poise_bus_delivery", default=None)


def delivery_in_progress() -> Delivery | None:
    """The record being handled, or None outside a handler (a transport's view)."""
    return _delivery.get()


def current_delivery() -> Delivery:
    """The record being handled by the calling handler."""
    delivery = _delivery.get()
    if delivery is None:
        raise RuntimeError("current_delivery() is only available inside a bus handler")
    return delivery


class Subscription(abc.ABC):
    """One member of a consumer group."""

    @abc.abstractmethod
    async def close(self, drain: bool = False) -> None:
        """Stop consuming.

        ``drain=False`` (a crash, in effect): an in-flight message is not committed, so
        another member gets it. ``drain=True`` (SIGTERM): the in-flight message is finished
        and committed first; nothing new is started.
        """


class Bus(abc.ABC):
    """Publish envelopes keyed by interview id; consume them in groups."""

    # Whether published messages outlive this process (a broker keeps them); where they do not,
    # a restarted publisher must publish again what was not consumed to its end.
    keeps_messages: bool = True

    def __init__(self, prefix: str = "", metrics: BusMetrics | None = None) -> None:
        self.prefix = prefix
        self.metrics = metrics or NullMetrics()

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def partition_of(self, key: str) -> int | None:
        """The partition ``key``'s messages land on in the topics this bus creates; None where
        the transport cannot say."""
        return None

    @property
    def partition_count(self) -> int | None:
        """Partitions per topic this bus creates; None where the transport cannot say."""
        return None

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    async def publish(self, topic: str, envelope: Envelope) -> None:
        """Append ``envelope`` to ``topic`` (unprefixed name) under its interview id."""

    @abc.abstractmethod
    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        """Append bytes as they are: for tools, replays and tests of poison messages."""

    async def flush(self) -> None:
        """Return once everything published so far is durably on the bus.

        Publishing may return before the broker acknowledges (so that many messages travel
        together); a producer that must know its messages are safe, such as the gateway
        before it answers an upload, flushes. Handlers need not: their sends are awaited
        before their input is committed.
        """

    @abc.abstractmethod
    async def read_all(self, topic: str) -> list[bytes]:
        """Every record ``topic`` (unprefixed) still holds, oldest first per partition.

        For operators and tests (e.g. reading a dead-letter topic), not for consuming.
        """

    @abc.abstractmethod
    async def subscribe(
        self,
        topics: Sequence[str],
        group: str,
        handler: Handler,
        policy: DeliveryPolicy | None = None,
        from_latest: bool = False,
    ) -> Subscription:
        """Join ``group`` on ``topics`` (unprefixed names) and start handling messages.

        A group new to a topic starts at its oldest record, or with ``from_latest`` at its
        end (live feeds that only want what happens from now on).
        """


def failure_label(error: BaseException) -> str:
    """What a log line says of a handler's failure: its type, and the error code of the database
    or inference server where there is one (``OperationalError (SQLITE_BUSY)``, ``IntegrityError
    (23505)``, ``InferenceServerException (StatusCode.INTERNAL)``), which tells a lock from a full
    disk, a bad request from a server away. Never the message: a database's can quote the
    statement's parameters, and those are candidate data."""
    # SQLAlchemy wraps the driver's exception as ``orig``; a driver's own is checked as it is.
    for candidate in (getattr(error, "orig", None), error):
        code = getattr(candidate, "sqlite_errorname", None) or getattr(candidate, "sqlstate", None)
        if code is None and type(candidate).__module__.startswith("tritonclient"):
            code = candidate.status()
        if isinstance(code, str) and code:
            return f"{type(error).__name__} ({code})"
    return type(error).__name__


def dead_letter_record(topic: str, value: bytes, error: BaseException, attempts: int) -> bytes:
    """What a dead-letter topic holds: the original bytes and why they could not be handled."""
    return json.dumps(
        {
            "topic": topic,
            "error": f"{type(error).__name__}: {error}"[:2000],
            "attempts": attempts,
            "value": value.decode("utf-8", errors="replace"),
        }
    ).encode()


async def handle_with_retries(
    handler: Handler,
    value: bytes,
    *,
    topic: str,
    group: str,
    policy: DeliveryPolicy,
    dead_letter: Callable[[str, bytes], Awaitable[None]],
    sleep: Callable[[float], Awaitable[None]],
    delivery: Delivery,
    metrics: BusMetrics | NullMetrics,
) -> None:
    """Decode and handle one record; after bounded retries, hand it to the dead-letter topic.

    Returns once the record may be committed. Cancellation propagates, so a closed consumer
    leaves the record uncommitted and another member receives it again.
    """
    try:
        envelope = Envelope.from_bytes(value)
    except Exception as exc:  # noqa: BLE001 - any decode failure makes the record poison
        log.warning("poison message on %s for group %s: %s", topic, group, type(exc).__name__)
        metrics.consumed.labels(topic=topic, outcome="poison").inc()
        await dead_letter(Topics.dead_letter(group), dead_letter_record(topic, value, exc, 0))
        return
    token = _delivery.set(delivery)
    try:
        attempt = 0
        outage = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                await handler(envelope)
                metrics.handler_seconds.labels(topic=topic).observe(time.perf_counter() - started)
                metrics.consumed.labels(topic=topic, outcome="ok").inc()
                return
            except ReplayFromHold:
                raise  # the transport rewinds; not the message's failure
            except TransportUnavailable:
                # The bus itself is away: wait for it without spending the message's attempts.
                attempt -= 1
                outage += 1
                metrics.consumed.labels(topic=topic, outcome="transport_unavailable").inc()
                log.warning("bus unavailable while handling %s (group %s); waiting", topic, group)
                await sleep(policy.delay(min(outage, 8)))
            except Exception as exc:  # noqa: BLE001 - the handler's failure decides retry or dead letter
                if attempt == policy.max_attempts:
                    metrics.consumed.labels(topic=topic, outcome="dead_letter").inc()
                    log.error(
                        "dead-lettering message from %s after %d attempts (group %s, stream %s, seq %d): %s",
                        topic, attempt, group, envelope.stream, envelope.seq, failure_label(exc),
                    )
                    await dead_letter(
                        Topics.dead_letter(group), dead_letter_record(topic, value, exc, attempt)
                    )
                    return
                metrics.consumed.labels(topic=topic, outcome="retried").inc()
                log.warning(
                    "handler failed on %s (group %s, attempt %d): %s", topic, group, attempt, failure_label(exc)
                )
                await sleep(policy.delay(attempt))
    finally:
        _delivery.reset(token)

