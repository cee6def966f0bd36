"""The delivery contract every bus transport must keep.

The transports are the fixture's parameters; a new transport joins by adding one, and the
same tests then run against it unchanged. Each test uses its own topic prefix and groups.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict

import pytest

from poise_common.bus import Bus, DeliveryPolicy, create_bus, current_delivery
from poise_common.bus.errors import MessageTooLarge, ReplayFromHold
from poise_common.bus.spread_ids import SpreadIds
from poise_common.messages import Envelope, Frame, FramesEnd, Topics

FAST = DeliveryPolicy(max_attempts=3, backoff_s=0.01, backoff_max_s=0.05)
TOPIC = "contract.events"


URLS: dict[str, str] = {}


@pytest.fixture(params=["memory", "kafka"])
def transport(request) -> str:
    """The transport under test; Kafka is a real broker started for the session."""
    if request.param == "kafka":
        URLS["kafka"] = f"kafka://{request.getfixturevalue('kafka_broker').bootstrap}?partitions=4"
    return request.param


def bus_url(kind: str) -> str:
    prefix = f"t{uuid.uuid4().hex[:10]}."  # unique topics (and so groups' offsets) per test
    if kind == "memory":
        return f"memory://?partitions=4&capacity=16&prefix={prefix}"
    return f"{URLS['kafka']}&prefix={prefix}"


def envelope(interview: str, seq: int, answer: str = "a") -> Envelope:
    return Envelope(
        interview_id=interview, answer_id=answer, tenant="t", stream="frames", seq=seq,
        payload=FramesEnd(count=seq),
    )


async def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the bus")
        await asyncio.sleep(0.01)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def started(kind: str) -> Bus:
    bus = create_bus(bus_url(kind))
    await bus.start()
    return bus


def test_per_key_order_across_partitions(transport):
    async def scenario():
        bus = await started(transport)
        seen: dict[str, list[int]] = defaultdict(list)

        async def handler(env: Envelope) -> None:
            seen[env.interview_id].append(env.seq)

        await bus.subscribe([TOPIC], f"g-{uuid.uuid4().hex[:6]}", handler, FAST)
        keys = [f"interview-{k}" for k in range(12)]
        for seq in range(20):
            for key in keys:
                await bus.publish(TOPIC, envelope(key, seq))
        await wait_for(lambda: sum(map(len, seen.values())) == 240)
        await bus.stop()
        return seen

    seen = run(scenario())
    for key, seqs in seen.items():
        assert seqs == list(range(20)), key


def test_the_bus_says_which_partition_a_key_lands_on(transport):
    """New interview ids are drawn to spread over partitions (``SpreadIds``); that only works if
    ``partition_of`` is where the transport really puts the key."""
    keys = [f"{k:032x}" for k in range(24)]  # fixed keys: the same partitions every run

    async def scenario():
        bus = await started(transport)
        landed: dict[str, int] = {}

        async def handler(env: Envelope) -> None:
            landed[env.interview_id] = current_delivery().partition

        await bus.subscribe([TOPIC], f"g-{uuid.uuid4().hex[:6]}", handler, FAST)
        for key in keys:
            await bus.publish(TOPIC, envelope(key, 0))
        await wait_for(lambda: len(landed) == len(keys))
        said = {key: bus.partition_of(key) for key in keys}
        await bus.stop()
        return landed, said

    landed, said = run(scenario())
    assert landed == said
    assert len(set(landed.values())) == 4  # not all on one partition: these keys use all four


def test_failed_handler_is_redelivered_not_committed(transport):
    async def scenario():
        bus = await started(transport)
        attempts: list[int] = []
        done: list[int] = []

        async def flaky(env: Envelope) -> None:
            attempts.append(env.seq)
            if env.seq == 1 and attempts.count(1) < 2:
                raise RuntimeError("transient")
            done.append(env.seq)

        await bus.subscribe([TOPIC], f"g-{uuid.uuid4().hex[:6]}", flaky, FAST)
        for seq in range(3):
            await bus.publish(TOPIC, envelope("k", seq))
        await wait_for(lambda: len(done) == 3)
        await bus.stop()
        return attempts, done

    attempts, done = run(scenario())
    assert done == [0, 1, 2]
    assert attempts == [0, 1, 1, 2]


def test_bounded_retries_then_dead_letter_and_partition_keeps_flowing(transport):
    async def scenario():
        bus = await started(transport)
        group = f"g-{uuid.uuid4().hex[:6]}"
        calls: list[int] = []
        done: list[int] = []
        dead: list[dict] = []

        async def handler(env: Envelope) -> None:
            calls.append(env.seq)
            if env.seq == 1:
                raise ValueError("always fails")
            done.append(env.seq)

        await bus.subscribe([TOPIC], group, handler, FAST)
        for seq in range(3):
            await bus.publish(TOPIC, envelope("k", seq))
        await wait_for(lambda: len(done) == 2)
        dead.extend(await dead_letters(bus, group, 1))
        await bus.stop()
        return calls, done, dead

    calls, done, dead = run(scenario())
    assert calls.count(1) == FAST.max_attempts
    assert done == [0, 2]
    record = dead[0]
    assert record["attempts"] == FAST.max_attempts
    assert "always fails" in record["error"]
    assert Envelope.model_validate_json(record["value"]).seq == 1


def test_poison_record_goes_to_dead_letter(transport):
    async def scenario():
        bus = await started(transport)
        group = f"g-{uuid.uuid4().hex[:6]}"
        done: list[int] = []

        async def handler(env: Envelope) -> None:
            done.append(env.seq)

        await bus.subscribe([TOPIC], group, handler, FAST)
        await bus.publish_raw(TOPIC, "k", b"\x00not json")
        await bus.publish_raw(TOPIC, "k", json.dumps({"interview_id": "k"}).encode())
        await bus.publish(TOPIC, envelope("k", 7))
        await wait_for(lambda: done == [7])
        dead = await dead_letters(bus, group, 2)
        await bus.stop()
        return dead

    dead = run(scenario())
    assert all(record["attempts"] == 0 for record in dead)
    assert "not json" in dead[0]["value"]


def test_each_group_sees_everything_members_share_partitions(transport):
    async def scenario():
        bus = await started(transport)
        shared = f"g-{uuid.uuid4().hex[:6]}"
        other = f"g-{uuid.uuid4().hex[:6]}"
        by_member: dict[str, list[tuple[str, int]]] = defaultdict(list)

        def recorder(name: str):
            async def handler(env: Envelope) -> None:
                by_member[name].append((env.interview_id, env.seq))
                await asyncio.sleep(0)
            return handler

        await bus.subscribe([TOPIC], shared, recorder("a"), FAST)
        await bus.subscribe([TOPIC], shared, recorder("b"), FAST)
        await bus.subscribe([TOPIC], other, recorder("c"), FAST)
        sent = [(f"key-{k}", s) for k in range(16) for s in range(5)]
        for key, seq in sent:
            await bus.publish(TOPIC, envelope(key, seq))
        await wait_for(lambda: len(by_member["a"]) + len(by_member["b"]) == len(sent))
        await wait_for(lambda: len(by_member["c"]) == len(sent))
        await bus.stop()
        return sent, by_member

    sent, by_member = run(scenario())
    assert sorted(by_member["a"] + by_member["b"]) == sorted(sent)  # once per group
    assert by_member["a"] and by_member["b"]  # both members got partitions
    assert not {k for k, _ in by_member["a"]} & {k for k, _ in by_member["b"]}  # a key stays on one
    assert sorted(by_member["c"]) == sorted(sent)


def test_interviews_opened_one_after_another_go_to_different_members(transport):
    """Spread ids (``SpreadIds``) give each of a group's members its own share of a few
    interviews at once, instead of the two or three on one member that hashing often gives."""
    async def scenario():
        bus = await started(transport)
        group = f"g-{uuid.uuid4().hex[:6]}"
        by_member: dict[int, set[str]] = defaultdict(set)

        def recorder(member: int):
            async def handler(env: Envelope) -> None:
                by_member[member].add(env.interview_id)
            return handler

        for member in range(4):
            await bus.subscribe([TOPIC], group, recorder(member), FAST)
        ids = SpreadIds(bus)
        interviews = [ids.next() for _ in range(8)]
        for interview in interviews:
            for seq in range(3):
                await bus.publish(TOPIC, envelope(interview, seq))
        await wait_for(lambda: set().union(*by_member.values()) == set(interviews))
        await bus.stop()
        return interviews, by_member

    interviews, by_member = run(scenario())
    assert sorted(len(seen) for seen in by_member.values()) == [2, 2, 2, 2]
    assert sorted(set().union(*by_member.values())) == sorted(interviews)


def test_member_closed_mid_message_leaves_it_uncommitted(transport):
    async def scenario():
        bus = await started(transport)
        group = f"g-{uuid.uuid4().hex[:6]}"
        entered = asyncio.Event()
        first_done: list[int] = []
        second_done: list[int] = []

        async def stuck(env: Envelope) -> None:
            entered.set()
            await asyncio.sleep(3600)
            first_done.append(env.seq)

        async def healthy(env: Envelope) -> None:
            second_done.append(env.seq)

        first = await bus.subscribe([TOPIC], group, stuck, FAST)
        await bus.publish(TOPIC, envelope("k", 0))
        await bus.publish(TOPIC, envelope("k", 1))
        await asyncio.wait_for(entered.wait(), 30)
        await first.close()  # dies in the middle of seq 0
        await bus.subscribe([TOPIC], group, healthy, FAST)
        await wait_for(lambda: len(second_done) == 2)
        await bus.stop()
        return first_done, second_done

    first_done, second_done = run(scenario())
    assert first_done == []
    assert second_done == [0, 1]


def test_slow_consumer_applies_back_pressure_without_loss(transport):
    async def scenario():
        bus = await started(transport)
        done: list[int] = []

        async def slow(env: Envelope) -> None:
            await asyncio.sleep(0.001)
            done.append(env.seq)

        await bus.subscribe([TOPIC], f"g-{uuid.uuid4().hex[:6]}", slow, FAST)
        for seq in range(200):  # far beyond the partition capacity of 16
            await bus.publish(TOPIC, envelope("one-key", seq))
        await wait_for(lambda: len(done) == 200)
        await bus.stop()
        return done

    assert run(scenario()) == list(range(200))


async def dead_letters(bus: Bus, group: str, expected: int) -> list[dict]:
    """The group's dead-letter records, once ``expected`` of them have arrived."""
    for _ in range(2000):
        records = [json.loads(v) for v in await bus.read_all(Topics.dead_letter(group))]
        if len(records) >= expected:
            return records
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {expected} dead-letter records")


def test_held_record_keeps_its_answer_replayable_until_released(transport):
    """A consumer that dies mid-answer replays the answer from its held first record."""

    async def scenario():
        bus = await started(transport)
        group = f"g-{uuid.uuid4().hex[:6]}"
        first: list[int] = []
        holds = {}

        async def holder(env: Envelope) -> None:
            if env.seq == 0:
                holds[env.answer_id] = current_delivery().hold()
            first.append(env.seq)
            if env.seq == 4:  # the answer's last record: its result is out, release
                holds.pop(env.answer_id).release()

        member = await bus.subscribe([TOPIC], group, holder, FAST)
        for seq in range(3):
            await bus.publish(TOPIC, envelope("k", seq))
        await wait_for(lambda: first == [0, 1, 2])
        await member.close()  # dies holding seq 0, with 1 and 2 handled

        second: list[int] = []

        async def releaser(env: Envelope) -> None:
            if env.seq == 0:
                holds[env.answer_id] = current_delivery().hold()
            second.append(env.seq)
            if env.seq == 4:
                holds.pop(env.answer_id).release()

        member = await bus.subscribe([TOPIC], group, releaser, FAST)
        for seq in range(3, 5):
            await bus.publish(TOPIC, envelope("k", seq))
        await wait_for(lambda: second == [0, 1, 2, 3, 4])
        await member.close()

        third: list[int] = []

        async def plain(env: Envelope) -> None:
            third.append(env.seq)

        await bus.subscribe([TOPIC], group, plain, FAST)
        await bus.publish(TOPIC, envelope("k", 5))
        await wait_for(lambda: third == [5])  # released: nothing before 5 comes back
        await asyncio.sleep(0.3)
        await bus.stop()
        return third

    assert run(scenario()) == [5]


def test_draining_close_finishes_and_commits_the_message_in_flight(transport):
    async def scenario():
        bus = await started(transport)
        group = f"g-{uuid.uuid4().hex[:6]}"
        entered = asyncio.Event()
        finished: list[int] = []

        async def slow(env: Envelope) -> None:
            entered.set()
            await asyncio.sleep(0.5)
            finished.append(env.seq)

        member = await bus.subscribe([TOPIC], group, slow, FAST)
        await bus.publish(TOPIC, envelope("k", 0))
        await asyncio.wait_for(entered.wait(), 30)
        await member.close(drain=True)
        assert finished == [0]

        again: list[int] = []

        async def record(env: Envelope) -> None:
            again.append(env.seq)

        await bus.subscribe([TOPIC], group, record, FAST)
        await bus.publish(TOPIC, envelope("k", 1))
        await wait_for(lambda: again == [1])
        await bus.stop()
        return again

    assert run(scenario()) == [1]


def test_oversize_message_is_refused_with_a_clear_error(transport):
    async def scenario():
        bus = await started(transport)
        big = Envelope(
            interview_id="k", answer_id="a", tenant="t", stream="frames", seq=0,
            payload=Frame(t_s=0.0, width=1, height=1, jpeg=b"\xff" * 2_000_000),
        )
        with pytest.raises(MessageTooLarge, match="over the 1000000-byte limit"):
            await bus.publish(TOPIC, big)
        await bus.stop()

    run(scenario())


def test_replay_from_hold_rewinds_to_the_held_record(transport):
    """A handler that lost an open answer's state gets the answer again from its first record."""

    async def scenario():
        bus = await started(transport)
        seen: list[int] = []
        holds = {}
        lost = [True]

        async def handler(env: Envelope) -> None:
            seen.append(env.seq)
            if env.seq == 0:
                holds[env.answer_id] = current_delivery().hold()
            if env.seq == 2 and lost[0]:
                lost[0] = False
                raise ReplayFromHold()
            if env.seq == 3:
                holds.pop(env.answer_id).release()

        await bus.subscribe([TOPIC], f"g-{uuid.uuid4().hex[:6]}", handler, FAST)
        for seq in range(4):
            await bus.publish(TOPIC, envelope("k", seq))
        await wait_for(lambda: seen[-1:] == [3])
        await bus.stop()
        return seen

    assert run(scenario()) == [0, 1, 2, 0, 1, 2, 3]


def test_a_new_group_from_latest_sees_only_what_comes_after_it(transport):
    async def scenario():
        bus = await started(transport)
        for seq in range(3):
            await bus.publish(TOPIC, envelope("k", seq))
        # publish() only enqueues: these three are "before" the group once they are written.
        await bus.flush()
        seen: list[int] = []

        async def handler(env: Envelope) -> None:
            seen.append(env.seq)

        await bus.subscribe([TOPIC], f"g-{uuid.uuid4().hex[:6]}", handler, FAST, from_latest=True)
        await asyncio.sleep(0.05)
        await bus.publish(TOPIC, envelope("k", 3))
        await wait_for(lambda: seen == [3])
        await asyncio.sleep(0.3)
        await bus.stop()
        return seen

    assert run(scenario()) == [3]


@pytest.mark.parametrize("codec", ["zstd", "gzip", "lz4", "none"])
def test_every_kafka_compression_carries_a_frame_unchanged(request, codec):
    """A JPEG frame (base64 in JSON) through the real broker with each codec the URL may name."""
    broker = request.getfixturevalue("kafka_broker")
    url = f"kafka://{broker.bootstrap}?partitions=2&compression={codec}&prefix=c{uuid.uuid4().hex[:10]}."
    jpeg = bytes(range(256)) * 160  # 40 KB, as a frame is

    async def scenario():
        bus = create_bus(url)
        assert bus.compression == (None if codec == "none" else codec)
        await bus.start()
        got: list[Envelope] = []

        async def keep(env: Envelope) -> None:
            got.append(env)

        await bus.subscribe([Topics.MEDIA_FRAMES], "g", keep)
        sent = Envelope(interview_id="i", answer_id="a", tenant="t", stream="frames", seq=0,
                        payload=Frame(t_s=0.0, width=640, height=360, jpeg=jpeg))
        await bus.publish(Topics.MEDIA_FRAMES, sent)
        await wait_for(lambda: got)
        await bus.stop()
        return sent, got[0]

    sent, received = run(scenario())
    assert received.payload.jpeg == jpeg and received == sent


def test_a_burst_of_frames_at_the_default_batching_arrives_whole_and_in_order(request):
    """Forty 40 kB frames published at once, more than one batch holds at the default batching
    (about a dozen fit in one): every frame arrives once, in order."""
    broker = request.getfixturevalue("kafka_broker")
    url = f"kafka://{broker.bootstrap}?partitions=2&prefix=b{uuid.uuid4().hex[:10]}."
    jpegs = [bytes([n]) * 40_000 for n in range(40)]

    async def scenario():
        bus = create_bus(url)
        assert (bus.linger_ms, bus.batch_bytes) == (50, 512 * 1024)
        await bus.start()
        got: list[Envelope] = []

        async def keep(env: Envelope) -> None:
            got.append(env)

        await bus.subscribe([Topics.MEDIA_FRAMES], "g", keep)
        for seq, jpeg in enumerate(jpegs):
            await bus.publish(Topics.MEDIA_FRAMES, Envelope(
                interview_id="i", answer_id="a", tenant="t", stream="frames", seq=seq,
                payload=Frame(t_s=seq / 10, width=640, height=360, jpeg=jpeg)))
        await bus.flush()
        await wait_for(lambda: len(got) >= len(jpegs))
        await asyncio.sleep(0.3)  # nothing more comes
        await bus.stop()
        return got

    got = run(scenario())
    assert [env.seq for env in got] == list(range(len(jpegs)))
    assert [env.payload.jpeg for env in got] == jpegs


def test_kafka_batching_options_are_read_from_the_url_and_checked():
    bus = create_bus("kafka://127.0.0.1:9092?linger_ms=0&batch_kb=64")
    assert (bus.linger_ms, bus.batch_bytes) == (0, 64 * 1024)
    with pytest.raises(ValueError, match="linger_ms must be a whole number from 0 to 1000, got 'soon'"):
        create_bus("kafka://127.0.0.1:9092?linger_ms=soon")
    with pytest.raises(ValueError, match="batch_kb must be from 16 to 1000, got 4096"):
        create_bus("kafka://127.0.0.1:9092?batch_kb=4096")


def test_an_unknown_kafka_compression_is_refused():
    with pytest.raises(ValueError, match="brotli"):
        create_bus("kafka://127.0.0.1:9092?compression=brotli")
    assert create_bus("kafka://127.0.0.1:9092").compression == "zstd"


async def topic_settings(bootstrap: str, names: list[str]) -> dict[str, dict[str, str]]:
    """retention.ms and segment.ms of each topic, as the broker reports them."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    finally:
        await admin.close()
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for _error, _message, _type, name, entries in response.resources:
            found[name] = {e[0]: e[1] for e in entries if e[0] in ("retention.ms", "segment.ms")}
    return found


def test_every_kafka_topic_keeps_messages_only_the_configured_time(request):
    """Frames and audio an hour by default, here ten minutes; every other topic, dead letters too,
    three days by default, here two hours; segments never longer than an hour."""
    broker = request.getfixturevalue("kafka_broker")
    prefix = f"r{uuid.uuid4().hex[:10]}."
    url = f"kafka://{broker.bootstrap}?partitions=1&prefix={prefix}&retention_ms=7200000&media_retention_ms=600000"

    async def scenario():
        bus = create_bus(url)
        await bus.start()
        await bus.publish_raw(Topics.dead_letter("nlp"), "i", b"{}")  # a dead-letter topic, made on first use
        await bus.flush()
        await bus.stop()
        names = [Topics.MEDIA_FRAMES, Topics.MEDIA_AUDIO, Topics.MEDIA_CONTROL, Topics.FEATURES_VISION,
                 Topics.FEATURES_AUDIO, Topics.TRANSCRIPTS, Topics.FEATURES_NLP, Topics.SCORECARDS, "dlq.nlp"]
        return await topic_settings(broker.bootstrap, [prefix + n for n in names])

    found = run(scenario())
    media = {"retention.ms": "600000", "segment.ms": "600000"}
    rest = {"retention.ms": "7200000", "segment.ms": "3600000"}
    assert found == {
        f"{prefix}media.frames": media, f"{prefix}media.audio": media,
        **{f"{prefix}{n}": rest for n in ("media.control", "features.vision", "features.audio", "transcripts",
                                           "features.nlp", "scorecards.v1", "dlq.nlp")},
    }


def test_kafka_retention_options_are_read_from_the_url_and_checked():
    bus = create_bus("kafka://127.0.0.1:9092")
    assert (bus.retention_ms, bus.media_retention_ms) == (3 * 24 * 3600 * 1000, 3600 * 1000)
    assert bus.topic_configs("transcripts") == {"retention.ms": "259200000", "segment.ms": "3600000"}
    with pytest.raises(ValueError, match="retention_ms must be from 60000 to 1209600000, got 2592000000"):
        create_bus("kafka://127.0.0.1:9092?retention_ms=2592000000")  # 30 days: no margin left
    with pytest.raises(ValueError, match="media_retention_ms must be a whole number"):
        create_bus("kafka://127.0.0.1:9092?media_retention_ms=1h")


def test_a_topic_made_elsewhere_that_keeps_messages_longer_is_named(request, caplog):
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    broker = request.getfixturevalue("kafka_broker")
    prefix = f"w{uuid.uuid4().hex[:10]}."

    async def scenario():
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:  # as an earlier version made it: the broker's default week
            await admin.create_topics([NewTopic(f"{prefix}transcripts", num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        bus = create_bus(f"kafka://{broker.bootstrap}?partitions=1&prefix={prefix}")
        await bus.start()
        await bus.stop()

    with caplog.at_level("WARNING", logger="poise_common.bus.kafka"):
        run(scenario())
    warned = [r.getMessage() for r in caplog.records if r.name == "poise_common.bus.kafka"]
    assert warned == [f"topic {prefix}transcripts keeps messages 604800000 ms, longer than the 259200000 ms "
                      "configured; set its retention.ms (deploy/README.md)"]
