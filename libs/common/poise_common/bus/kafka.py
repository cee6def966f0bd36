"""The Kafka transport (aiokafka), with the same delivery rules as the in-memory bus.

- Topics (prefixed) are created with the configured partition count when first needed;
  the standard ones when the bus starts. Each keeps its messages a bounded time (retention.ms):
  every topic can carry candidates' data.
- The key is the interview id, so an interview stays ordered on one partition.
- Offsets are committed by hand after a handler returns, at the oldest held record.
- One consumer per subscription; records of a fetched batch are handled partition by
  partition concurrently and in order within a partition, and the next fetch waits for the
  batch, so no record is in flight while the group rebalances.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from poise_common.bus.base import (
    Bus,
    Delivery,
    DeliveryPolicy,
    Handler,
    PartitionCursor,
    Subscription,
    delivery_in_progress,
    handle_with_retries,
)
from poise_common.bus.errors import MessageTooLarge, ReplayFromHold, TransportUnavailable
from poise_common.messages import Envelope, Topics
from poise_common.metrics import BusMetrics

log = logging.getLogger(__name__)

STANDARD_TOPICS = (
    Topics.MEDIA_FRAMES, Topics.MEDIA_AUDIO, Topics.MEDIA_CONTROL, Topics.FEATURES_VISION,
    Topics.FEATURES_AUDIO, Topics.TRANSCRIPTS, Topics.FEATURES_NLP, Topics.SCORECARDS,
)
MEDIA_TOPICS = (Topics.MEDIA_FRAMES, Topics.MEDIA_AUDIO)
# Every topic can hold candidates' data in clear (frames, audio, transcripts, scorecards with
# quotes, and dead letters, which copy a whole message), which an erasure cannot reach, so none
# keeps Kafka's default week. Three days let a consumer that was down over a weekend catch up
# from its committed offset; that is well inside the 30 days within which Illinois wants a
# candidate's videos gone from every copy.
DEFAULT_RETENTION_MS = 3 * 24 * 3600 * 1000
# Frames and audio: only as long as a crashed analyser needs to replay the answers it held open.
DEFAULT_MEDIA_RETENTION_MS = 3600 * 1000
# Kafka deletes a log segment once its newest message has expired, and starts a new segment every
# segment.ms (a week by default): a busy topic's oldest message would outlive its retention by up to
# that long. Segments of at most an hour keep it to the retention plus an hour.
MAX_SEGMENT_MS = 3600 * 1000
# Kafka's default message.max.bytes is about 1 MiB; stay under it with room for headers.
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
# The gateway publishes an answer's frames a few milliseconds apart; with a 2 ms linger each went
# in a request of its own, about 2.5 ms of the broker's CPU and 1 ms of the publisher's. Waiting up
# to this long lets one request carry the frames that follow (900 frames of 43 kB published 6 ms
# apart: broker 2.5 -> 1.0 CPU s, clients 2.0 -> 0.7 s). It delays an output at most this long;
# handlers wait for acknowledgements once per fetched batch, not per message.
DEFAULT_LINGER_MS = 50
# A batch carries up to this much for one partition: about a dozen frames (the producer's 16 kB
# default held less than one, so every frame went alone), well under the broker's message.max.bytes.
DEFAULT_BATCH_BYTES = 512 * 1024
# Sends outside a handler that may be unacknowledged at once before publish waits for the oldest.
MAX_UNFLUSHED = 2000
# A long batch still commits at least this often, so a crash replays little.
COMMIT_INTERVAL_S = 1.0


class KafkaBus(Bus):
    def __init__(
        self,
        bootstrap: str,
        *,
        prefix: str = "",
        partitions: int = 4,
        replication: int = 1,
        compression: str | None = "zstd",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        linger_ms: int = DEFAULT_LINGER_MS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        client_id: str = "poise",
        retention_ms: int = DEFAULT_RETENTION_MS,
        media_retention_ms: int = DEFAULT_MEDIA_RETENTION_MS,
        metrics: BusMetrics | None = None,
    ) -> None:
        super().__init__(prefix, metrics)
        self.retention_ms = retention_ms
        self.media_retention_ms = media_retention_ms
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.replication = replication
        self.compression = compression
        self.max_message_bytes = max_message_bytes
        self.linger_ms = linger_ms
        self.batch_bytes = batch_bytes
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._ensured: set[str] = set()
        self._topic_lock = asyncio.Lock()
        self._subscriptions: list[_KafkaSubscription] = []
        self._unflushed: list[asyncio.Future] = []

    async def start(self) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"{self.client_id}-admin")
        await self._admin.start()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=self.compression,
            max_request_size=self.max_message_bytes + 64 * 1024,
            linger_ms=self.linger_ms,
            max_batch_size=self.batch_bytes,
        )
        await self._producer.start()
        await self.ensure_topics([self.topic(t) for t in STANDARD_TOPICS])

    async def stop(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close(drain=True)
        if self._producer is not None:
            await self._producer.stop()
        if self._admin is not None:
            await self._admin.close()

    async def ensure_topics(self, names: Sequence[str]) -> None:
        missing = [n for n in names if n not in self._ensured]
        if not missing:
            return
        try:
            await self._create_topics(missing)
        except KafkaError as exc:
            raise TransportUnavailable(f"cannot create topics: {type(exc).__name__}") from exc

    async def _create_topics(self, missing: list[str]) -> None:
        async with self._topic_lock:
            existing = set(await self._admin.list_topics())
            new = [
                NewTopic(name=n, num_partitions=self.partitions, replication_factor=self.replication,
                         topic_configs=self.topic_configs(n))
                for n in missing if n not in existing
            ]
            if new:
                try:
                    await self._admin.create_topics(new)
                except TopicAlreadyExistsError:
                    pass  # another process created it first
            await self._warn_of_longer_retention([n for n in missing if n in existing])
            self._ensured.update(missing)

    async def _warn_of_longer_retention(self, names: list[str]) -> None:
        """Name the topics made elsewhere (or by an earlier version) that keep messages longer than
        configured. They are not changed here: altering a topic's configs needs rights the services
        should not hold; the chart's topics Job (or kafka-configs.sh) applies the retention."""
        if not names:
            return
        try:
            responses = await self._admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, configs={"retention.ms": None}) for name in names]
            )
        except KafkaError as exc:
            log.debug("could not read the topics' retention: %s", type(exc).__name__)
            return
        for response in responses:
            for _error, _message, _type, name, entries in response.resources:
                kept = next((int(e[1]) for e in entries if e[0] == "retention.ms" and e[1] is not None), None)
                wanted = int(self.topic_configs(name)["retention.ms"])
                if kept is not None and (kept < 0 or kept > wanted):
                    log.warning("topic %s keeps messages %s, longer than the %d ms configured; set its "
                                "retention.ms (deploy/README.md)", name,
                                "forever" if kept < 0 else f"{kept} ms", wanted)

    def topic_configs(self, name: str) -> dict[str, str]:
        """The configs topic ``name`` (prefixed) is created with: how long it keeps messages."""
        media = {self.topic(t) for t in MEDIA_TOPICS}
        retention = self.media_retention_ms if name in media else self.retention_ms
        return {"retention.ms": str(retention), "segment.ms": str(min(retention, MAX_SEGMENT_MS))}

    def partition_of(self, key: str) -> int:
        # The producer's default partitioner (Java's murmur2), for a topic with the configured
        # count; a topic created elsewhere with another count puts the key elsewhere.
        return (murmur2(key.encode()) & 0x7FFFFFFF) % self.partitions

    @property
    def partition_count(self) -> int:
        return self.partitions

    async def publish(self, topic: str, envelope: Envelope) -> None:
        await self.publish_raw(topic, envelope.interview_id, envelope.to_bytes())

    async def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        name = self.topic(topic)
        if len(value) > self.max_message_bytes:
            raise MessageTooLarge(topic, len(value), self.max_message_bytes)
        await self.ensure_topics([name])
        try:
            # send() only enqueues: messages travel in batches and the acknowledgement is
            # awaited where it matters, before a handler's input is committed or on flush().
            # The idempotent producer keeps per-partition order across its retries.
            ack = await self._producer.send(name, value, key=key.encode())
        except KafkaError as exc:
            raise TransportUnavailable(f"cannot publish to {topic}: {type(exc).__name__}") from exc
        delivery = delivery_in_progress()
        if delivery is not None:
            delivery.pending.append(ack)
        else:
            self._unflushed.append(ack)
            if len(self._unflushed) > MAX_UNFLUSHED:
                await self._settle(self._unflushed[: len(self._unflushed) // 2])
        self.metrics.published.labels(topic=topic).inc()

    async def flush(self) -> None:
        await self._settle(self._unflushed)

    async def _settle(self, acks: list[asyncio.Future]) -> None:
        taken = list(acks)
        del acks[: len(taken)]
        try:
            await asyncio.gather(*taken)
        except KafkaError as exc:
            raise TransportUnavailable(f"a publish was not acknowledged: {type(exc).__name__}") from exc

    async def read_all(self, topic: str) -> list[bytes]:
        name = self.topic(topic)
        await self.ensure_topics([name])
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(name, p) for p in (consumer.partitions_for_topic(name) or ())]
            if not partitions:
                await consumer._client.force_metadata_update()  # noqa: SLF001 - first use of a new topic
                partitions = [TopicPartition(name, p) for p in (consumer.partitions_for_topic(name) or ())]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            values: list[bytes] = []
            pending = [tp for tp in partitions if ends[tp] > 0]
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=1000)
                for records in batch.values():
                    values += [r.value for r in records]
                pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
            return values
        finally:
            await consumer.stop()

    async def subscribe(
        self,
        topics: Sequence[str],
        group: str,
        handler: Handler,
        policy: DeliveryPolicy | None = None,
        from_latest: bool = False,
    ) -> Subscription:
        names = [self.topic(t) for t in topics]
        await self.ensure_topics(names)
        subscription = _KafkaSubscription(
            self, names, group, handler, policy or DeliveryPolicy(), "latest" if from_latest else "earliest"
        )
        await subscription.start()
        self._subscriptions.append(subscription)
        return subscription


class _Revoker(ConsumerRebalanceListener):
    def __init__(self, subscription: "_KafkaSubscription") -> None:
        self.subscription = subscription

    async def on_partitions_revoked(self, revoked) -> None:
        for tp in revoked:
            self.subscription.cursors.pop(tp, None)

    async def on_partitions_assigned(self, assigned) -> None:
        return None


class _KafkaSubscription(Subscription):
    def __init__(
        self, bus: KafkaBus, topics: list[str], group: str, handler: Handler, policy: DeliveryPolicy, reset: str
    ) -> None:
        self.bus = bus
        self.reset = reset
        self.topics = topics
        self.group = group
        self.handler = handler
        self.policy = policy
        self.cursors: dict[TopicPartition, PartitionCursor] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._draining = False
        self._closed = False

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bus.bootstrap,
            group_id=self.group,
            client_id=f"{self.bus.client_id}-{self.group}-{uuid.uuid4().hex[:6]}",
            enable_auto_commit=False,
            auto_offset_reset=self.reset,
            # Speech recognition of a long answer runs inside one handler call.
            max_poll_interval_ms=15 * 60 * 1000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self._consumer.subscribe(self.topics, listener=_Revoker(self))
        await self._consumer.start()
        if self.reset == "latest":
            await self._settle_position()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _settle_position(self, timeout: float = 30.0) -> None:
        """A live feed's "now" is fixed once it holds its partitions, not at its first fetch."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._consumer.assignment():
            if loop.time() > deadline:
                raise TransportUnavailable(f"group {self.group} got no partitions within {timeout:.0f} s")
            await asyncio.sleep(0.05)  # the group join runs in the consumer's background task
        for tp in self._consumer.assignment():
            await self._consumer.position(tp)

    async def _run(self) -> None:
        consumer = self._consumer
        while not self._draining:
            try:
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
            except KafkaError as exc:
                log.warning("fetch failed for group %s: %s; retrying", self.group, type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            if batch:
                await asyncio.gather(*(self._partition(tp, records) for tp, records in batch.items()))
            self._report_lag()

    async def _partition(self, tp: TopicPartition, records) -> None:
        short = tp.topic[len(self.bus.prefix):]
        acks: list[asyncio.Future] = []
        last_commit = asyncio.get_running_loop().time()
        for record in records:
            if self._draining:
                break
            cursor = self.cursors.get(tp)
            if cursor is None:
                cursor = self.cursors[tp] = PartitionCursor(position=record.offset)
            delivery = Delivery(topic=short, partition=tp.partition, offset=record.offset, cursor=cursor)

            async def dead_letter(dlq: str, value: bytes, key: bytes | None = record.key) -> None:
                await self.bus.publish_raw(dlq, (key or b"").decode(errors="replace"), value)

            try:
                await handle_with_retries(
                    self.handler,
                    record.value,
                    topic=short,
                    group=self.group,
                    policy=self.policy,
                    dead_letter=dead_letter,
                    sleep=asyncio.sleep,
                    delivery=delivery,
                    metrics=self.bus.metrics,
                )
            except ReplayFromHold:
                # Everything from the oldest held record is delivered again.
                await self._commit(tp, cursor, acks)
                if tp in self._consumer.assignment():
                    self._consumer.seek(tp, cursor.commit_point())
                cursor.position = cursor.commit_point()
                return
            except Exception as exc:  # noqa: BLE001 - e.g. the dead-letter topic was unreachable
                # The record is not done: fetch it again rather than skip it.
                log.warning("record on %s not handled (%s); it will be fetched again", short, type(exc).__name__)
                await self._commit(tp, cursor, acks)
                if tp in self._consumer.assignment():
                    self._consumer.seek(tp, record.offset)
                await asyncio.sleep(1.0)
                return
            acks += delivery.pending
            cursor.position = record.offset + 1
            now = asyncio.get_running_loop().time()
            if now - last_commit >= COMMIT_INTERVAL_S:
                if not await self._commit(tp, cursor, acks):
                    return
                acks, last_commit = [], now
        cursor = self.cursors.get(tp)
        if cursor is not None:
            await self._commit(tp, cursor, acks)

    async def _commit(self, tp: TopicPartition, cursor: PartitionCursor, acks: list[asyncio.Future]) -> bool:
        """Commit what is handled, once everything it produced is acknowledged.

        If some output was not acknowledged, nothing is committed and the partition is
        rewound to the last commit: the records are handled again and consumers downstream
        ignore what they already applied.
        """
        try:
            await asyncio.gather(*acks)
        except KafkaError as exc:
            log.warning("output of group %s not acknowledged (%s); replaying", self.group, type(exc).__name__)
            self.cursors.pop(tp, None)
            if tp in self._consumer.assignment():
                committed = await self._consumer.committed(tp)
                if committed is not None:
                    self._consumer.seek(tp, committed)
                else:
                    await self._consumer.seek_to_beginning(tp)
            return False
        point = cursor.commit_point()
        if self._committed.get(tp) != point:
            try:
                await self._consumer.commit({tp: point})
                self._committed[tp] = point
            except KafkaError as exc:
                # Not fatal: a later commit covers this point; at worst some records are
                # delivered again, which every consumer tolerates.
                log.warning("commit failed for group %s: %s", self.group, type(exc).__name__)
        return True

    def _report_lag(self) -> None:
        lag: dict[str, int] = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            done = self.cursors[tp].position if tp in self.cursors else self._committed.get(tp, high)
            short = tp.topic[len(self.bus.prefix):]
            lag[short] = lag.get(short, 0) + max(0, high - done)
        for topic, value in lag.items():
            self.bus.metrics.lag.labels(topic=topic).set(value)

    async def close(self, drain: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if drain:
            self._draining = True  # the current batch stops after its in-flight records
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=15 * 60)
            except Exception:  # noqa: BLE001 - a failed run loop still has to leave the group
                log.exception("consumer loop of group %s ended with an error", self.group)
        else:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()
        if self in self.bus._subscriptions:
            self.bus._subscriptions.remove(self)
