"""The in-memory transport: Kafka's delivery semantics inside one process.

Each topic is a set of append-only partition logs; each consumer group keeps a committed
offset per partition; group members share partitions. A full partition makes ``publish``
wait (back-pressure) rather than drop, and a handler failure never advances the offset.
Records are stored serialised, so the embedded mode exercises the same encoding as Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from poise_common.bus.base import (
    Bus,
    Delivery,
    DeliveryPolicy,
    Handler,
    PartitionCursor,
    Subscription,
    handle_with_retries,
)
from poise_common.bus.errors import MessageTooLarge, ReplayFromHold
from poise_common.messages import Envelope
from poise_common.metrics import BusMetrics

log = logging.getLogger(__name__)


def partition_for(key: str, partitions: int) -> int:
    # A stable hash (not Python's salted hash()) so a key maps to the same partition every run.
    return zlib.crc32(key.encode()) % partitions


@dataclass
class _Partition:
    records: list[tuple[str, bytes]] = field(default_factory=list)
    base: int = 0  # offset of records[0]; older records were released once every group passed them

    @property
    def end(self) -> int:
        return self.base + len(self.records)

    def at(self, offset: int) -> tuple[str, bytes]:
        return self.records[offset - self.base]


@dataclass
class _Group:
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    # Where the group's members have read to; ahead of committed while records are held.
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    members: list["_MemorySubscription"] = field(default_factory=list)
    topics: set[str] = field(default_factory=set)


class MemoryBus(Bus):
    """An in-process bus with per-key order, consumer groups and at-least-once delivery."""

    def __init__(
        self,
        partitions: int = 4,
        capacity: int = 256,
        prefix: str = "",
        metrics: BusMetrics | None = None,
        max_message_bytes: int = 1_000_000,
    ) -> None:
        super().__init__(prefix, metrics)
        self.partitions = partitions
        self.capacity = capacity  # records a partition may hold beyond its slowest group
        self.max_message_bytes = max_message_bytes  # the same limit as Kafka's, so embedded runs catch it too
        self._topics: dict[str, list[_Partition]] = {}
        self._groups: dict[str, _Group] = {}
        self._changed: asyncio.Condition | None = None
        self._running = False

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._changed = asyncio.Condition()
        self._running = True

    async def stop(self) -> None:
        self._running = False
        for group in list(self._groups.values()):
            for member in list(group.members):
                await member.close()

    @property
    def changed(self) -> asyncio.Condition:
        if self._changed is None:
            raise RuntimeError("MemoryBus.start() has not been awaited")
        return self._changed

    # -- producing -----------------------------------------------------------------------
    def _partitions(self, topic: str) -> list[_Partition]:
        if topic not in self._topics:
            self._topics[topic] = [_Partition() for _ in range(self.partitions)]
        return self._topics[topic]

    def _slowest(self, topic: str, index: int, read: bool = False) -> int | None:
        """The lowest committed offset (what must be retained), or with ``read`` the lowest
        read position (what back-pressure waits on: a held answer must not block its own tail)."""
        offsets = [
            (group.positions if read else group.committed).get((topic, index), 0)
            for group in self._groups.values()
            if topic in group.topics
        ]
        return min(offsets) if offsets else None

    async def publish(self, topic: str, envelope: Envelope) -> None:
        await self.publish_raw(topic, envelope.interview_id, envelope.to_bytes())

    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        if len(value) > self.max_message_bytes:
            raise MessageTooLarge(topic, len(value), self.max_message_bytes)
        name = self.topic(topic)
        index = partition_for(key, self.partitions)
        part = self._partitions(name)[index]
        async with self.changed:
            while True:
                slowest = self._slowest(name, index, read=True)
                if slowest is None or part.end - slowest < self.capacity:
                    break
                await self.changed.wait()
            part.records.append((key, value))
            self.changed.notify_all()
        self.metrics.published.labels(topic=topic).inc()

    # -- consuming -----------------------------------------------------------------------
    async def subscribe(
        self,
        topics: Sequence[str],
        group: str,
        handler: Handler,
        policy: DeliveryPolicy | None = None,
        from_latest: bool = False,
    ) -> Subscription:
        state = self._groups.setdefault(group, _Group())
        names = [self.topic(t) for t in topics]
        for name in names:
            for index, part in enumerate(self._partitions(name)):
                if from_latest and name not in state.topics:
                    state.committed[(name, index)] = state.positions[(name, index)] = part.end
        state.topics.update(names)
        member = _MemorySubscription(self, group, names, handler, policy or DeliveryPolicy())
        state.members.append(member)
        self._rebalance(group)
        return member

    def _rebalance(self, group: str) -> None:
        """Spread the group's partitions over its members, like a Kafka group rebalance."""
        state = self._groups[group]
        assignments: list[list[tuple[str, int]]] = [[] for _ in state.members]
        slots = [(t, i) for t in sorted(state.topics) for i in range(self.partitions)]
        for n, slot in enumerate(slots):
            if assignments:
                assignments[n % len(assignments)].append(slot)
        for member, assigned in zip(state.members, assignments):
            member.assign(assigned)

    def _commit(self, group: str, topic: str, index: int, offset: int, position: int) -> None:
        self._groups[group].committed[(topic, index)] = offset
        self._groups[group].positions[(topic, index)] = position
        self._release(topic, index)
        self.changed.notify_all()

    def _release(self, topic: str, index: int) -> None:
        slowest = self._slowest(topic, index)
        part = self._topics[topic][index]
        if slowest is not None and slowest > part.base:
            del part.records[: slowest - part.base]
            part.base = slowest

    def _leave(self, member: "_MemorySubscription") -> None:
        state = self._groups[member.group]
        if member in state.members:
            state.members.remove(member)
            self._rebalance(member.group)

    def idle(self) -> bool:
        """True when every group has committed every record of every topic it reads."""
        return all(
            group.committed.get((topic, index), 0) >= part.end
            for group in self._groups.values()
            for topic in group.topics
            for index, part in enumerate(self._topics[topic])
        )

    async def read_all(self, topic: str) -> list[bytes]:
        return [value for part in self._partitions(self.topic(topic)) for _, value in part.records]


class _MemorySubscription(Subscription):
    def __init__(
        self,
        bus: MemoryBus,
        group: str,
        topics: list[str],
        handler: Handler,
        policy: DeliveryPolicy,
    ) -> None:
        self.bus = bus
        self.group = group
        self.topics = topics
        self.handler = handler
        self.policy = policy
        self._tasks: dict[tuple[str, int], asyncio.Task] = {}
        self._closed = False
        self._busy = 0
        self._draining = False
        self._drained = asyncio.Event()

    def assign(self, slots: list[tuple[str, int]]) -> None:
        wanted = set(slots)
        for slot, task in list(self._tasks.items()):
            if slot not in wanted:
                task.cancel()
                del self._tasks[slot]
        for slot in slots:
            if slot not in self._tasks and not self._closed:
                self._tasks[slot] = asyncio.get_running_loop().create_task(self._consume(*slot))

    async def _next(self, topic: str, index: int, offset: int) -> tuple[str, bytes]:
        part = self.bus._topics[topic][index]
        async with self.bus.changed:
            while offset >= part.end:
                await self.bus.changed.wait()
            return part.at(offset)

    async def _consume(self, topic: str, index: int) -> None:
        state = self.bus._groups[self.group]
        # A member starts where its group committed: after a crash or a rebalance that is
        # the oldest record anyone still held, so a held answer is replayed whole.
        cursor = PartitionCursor(position=state.committed.get((topic, index), 0))
        short = topic[len(self.bus.prefix):]
        while True:
            offset = cursor.position
            key, value = await self._next(topic, index, offset)
            self._busy += 1
            try:
                async def dead_letter(dlq: str, record: bytes, key: str = key) -> None:
                    await self.bus.publish_raw(dlq, key, record)

                try:
                    await handle_with_retries(
                        self.handler,
                        value,
                        topic=short,
                        group=self.group,
                        policy=self.policy,
                        dead_letter=dead_letter,
                        sleep=asyncio.sleep,
                        delivery=Delivery(topic=short, partition=index, offset=offset, cursor=cursor),
                        metrics=self.bus.metrics,
                    )
                except ReplayFromHold:
                    cursor.position = cursor.commit_point()
                    continue
                cursor.position = offset + 1
                async with self.bus.changed:
                    self.bus._commit(self.group, topic, index, cursor.commit_point(), cursor.position)
                    end = self.bus._topics[topic][index].end
                self.bus.metrics.lag.labels(topic=short).set(end - cursor.position)
            finally:
                self._busy -= 1
                if self._draining and self._busy == 0:
                    self._drained.set()
            if self._draining:
                return

    async def close(self, drain: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if drain and self._busy:
            self._draining = True  # each partition task stops after its current record
            await self._drained.wait()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self.bus._leave(self)
