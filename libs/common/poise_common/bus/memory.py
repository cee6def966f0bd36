"""The in-memory transport: Kafka's delivery semantics inside one process.

Each topic is a set of append-only partition logs; each consumer group keeps a committed
offset per partition; group members share partitions. A full partition makes ``publish``
wait (back-pressure) rather than drop, and a handler failure never advances the offset.
Records are stored serialised, so the embedded mode exercises the same encoding as Kafka.

Like Kafka's log, a partition keeps what a group still holds (an open answer's frames, for a
replay) after every group has read it; those records go to a spill file on disk once more
than ``capacity`` of them are kept, so memory stays the same however long an answer is.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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


# Released records at the head of a spill file worth copying the rest away from.
_COMPACT_BYTES = 64 << 20


class _SpillFile:
    """Records every group has read but one still holds, oldest first, for a replay.

    The file has no name, so it goes with the process; its records are candidates' frames and
    speech, so each is sealed (AES-GCM) with a key that only this process ever holds.
    """

    def __init__(self, directory: str | None) -> None:
        self._directory = directory
        self._file = tempfile.TemporaryFile(dir=directory)
        self._aead = AESGCM(AESGCM.generate_key(bit_length=128))
        self._sealed = 0  # records sealed so far: each one's nonce
        self._index: list[tuple[int, int, str]] = []  # (position, length, key) per record
        self._end = 0

    def __len__(self) -> int:
        return len(self._index)

    def append(self, key: str, value: bytes) -> None:
        nonce = self._sealed.to_bytes(12, "big")
        self._sealed += 1
        sealed = nonce + self._aead.encrypt(nonce, value, None)
        self._file.seek(self._end)
        self._file.write(sealed)
        self._index.append((self._end, len(sealed), key))
        self._end += len(sealed)

    def read(self, i: int) -> tuple[str, bytes]:
        position, length, key = self._index[i]
        self._file.seek(position)
        sealed = self._file.read(length)
        return key, self._aead.decrypt(sealed[:12], sealed[12:], None)

    def drop(self, count: int) -> None:
        """Forget the oldest ``count`` records, giving their disk space back once it is most of the file."""
        del self._index[:count]
        if not self._index:
            self._file.seek(0)
            self._file.truncate()
            self._end = 0
            return
        start = self._index[0][0]
        # Holds of overlapping answers may never all end at once (a server's busy partition):
        # the live tail is copied to a fresh file rather than letting the old one grow for ever.
        if start >= _COMPACT_BYTES and start * 2 >= self._end:
            fresh = tempfile.TemporaryFile(dir=self._directory)
            self._file.seek(start)
            while chunk := self._file.read(1 << 20):
                fresh.write(chunk)
            self._file.close()
            self._file = fresh
            self._index = [(position - start, length, key) for position, length, key in self._index]
            self._end -= start

    def close(self) -> None:
        self._file.close()


@dataclass
class _Partition:
    records: list[tuple[str, bytes]] = field(default_factory=list)  # in memory, after the spilled ones
    base: int = 0  # offset of the oldest record kept; older ones were released once every group passed them
    spilled: _SpillFile | None = None  # records from ``base`` on that wait on disk for a replay
    # Wakes this partition's readers (a record arrived) and its writers (a group moved on). One per
    # partition, all on the bus's one lock: a record wakes only the consumers that can take it.
    changed: asyncio.Condition | None = None

    @property
    def _on_disk(self) -> int:
        return len(self.spilled) if self.spilled is not None else 0

    @property
    def end(self) -> int:
        return self.base + self._on_disk + len(self.records)

    def at(self, offset: int) -> tuple[str, bytes]:
        index = offset - self.base
        if index < self._on_disk:
            return self.spilled.read(index)
        return self.records[index - self._on_disk]

    def release(self, offset: int) -> None:
        """Drop every record before ``offset``."""
        count = offset - self.base
        if count <= 0:
            return
        from_disk = min(count, self._on_disk)
        if from_disk:
            self.spilled.drop(from_disk)
        del self.records[: count - from_disk]
        self.base = offset

    def spill(self, offset: int, directory: str | None) -> None:
        """Move the records in memory before ``offset`` to disk."""
        count = offset - (self.base + self._on_disk)
        if count <= 0:
            return
        if self.spilled is None:
            self.spilled = _SpillFile(directory)
        for key, value in self.records[:count]:
            self.spilled.append(key, value)
        del self.records[:count]


@dataclass
class _Group:
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    # Where the group's members have read to; ahead of committed while records are held.
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    members: list["_MemorySubscription"] = field(default_factory=list)
    topics: set[str] = field(default_factory=set)


class MemoryBus(Bus):
    """An in-process bus with per-key order, consumer groups and at-least-once delivery."""

    keeps_messages = False  # its logs (and spill files) end with the process

    def __init__(
        self,
        partitions: int = 4,
        capacity: int = 256,
        prefix: str = "",
        metrics: BusMetrics | None = None,
        max_message_bytes: int = 1_000_000,
        spill_dir: str | None = None,
    ) -> None:
        super().__init__(prefix, metrics)
        self.partitions = partitions
        self.capacity = capacity  # records a partition may hold beyond its slowest group
        self.spill_dir = spill_dir  # where held records wait for a replay; None: the system's temporary folder
        self.max_message_bytes = max_message_bytes  # the same limit as Kafka's, so embedded runs catch it too
        self._topics: dict[str, list[_Partition]] = {}
        self._groups: dict[str, _Group] = {}
        self._lock: asyncio.Lock | None = None
        self._running = False

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._lock = asyncio.Lock()
        for partitions in self._topics.values():
            for part in partitions:
                part.changed = None
        self._running = True

    async def stop(self) -> None:
        self._running = False
        for group in list(self._groups.values()):
            for member in list(group.members):
                await member.close()
        for partitions in self._topics.values():
            for part in partitions:
                if part.spilled is not None:
                    part.spilled.close()
                    part.spilled = None

    def changed(self, part: _Partition) -> asyncio.Condition:
        """``part``'s condition (on the bus's one lock, which guards every partition and group)."""
        if self._lock is None:
            raise RuntimeError("MemoryBus.start() has not been awaited")
        if part.changed is None:
            part.changed = asyncio.Condition(self._lock)
        return part.changed

    def partition_of(self, key: str) -> int:
        return partition_for(key, self.partitions)

    @property
    def partition_count(self) -> int:
        return self.partitions

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
        changed = self.changed(part)
        async with changed:
            while True:
                slowest = self._slowest(name, index, read=True)
                if slowest is None or part.end - slowest < self.capacity:
                    break
                await changed.wait()
            part.records.append((key, value))
            changed.notify_all()
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
        self.changed(self._topics[topic][index]).notify_all()

    def _release(self, topic: str, index: int) -> None:
        part = self._topics[topic][index]
        slowest = self._slowest(topic, index)
        if slowest is None:
            return
        part.release(slowest)
        # Read by every group, kept only for a replay: past ``capacity`` such records, to disk.
        read = self._slowest(topic, index, read=True)
        part.spill(min(read, part.end - self.capacity), self.spill_dir)

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
        return [
            part.at(offset)[1]
            for part in self._partitions(self.topic(topic))
            for offset in range(part.base, part.end)
        ]


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
        changed = self.bus.changed(part)
        async with changed:
            while offset >= part.end:
                await changed.wait()
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
                async with self.bus.changed(self.bus._topics[topic][index]):
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
