"""New interview ids take the bus's partitions in turn, under each transport's own hashing."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from poise_common.bus.kafka import KafkaBus
from poise_common.bus.memory import MemoryBus
from poise_common.bus.spread_ids import SpreadIds


@pytest.mark.parametrize(
    "bus",
    [MemoryBus(partitions=4), MemoryBus(partitions=12), KafkaBus("127.0.0.1:1", partitions=4),
     KafkaBus("127.0.0.1:1", partitions=24)],
    ids=["memory-4", "memory-12", "kafka-4", "kafka-24"],
)
def test_consecutive_ids_take_the_partitions_in_turn(bus):
    partitions = bus.partition_count
    ids = SpreadIds(bus)
    drawn = [ids.next() for _ in range(3 * partitions)]
    landed = [bus.partition_of(i) for i in drawn]
    # Each one the partition after the one before, so every partition gets the same share.
    assert all((b - a) % partitions == 1 for a, b in zip(landed, landed[1:]))
    assert Counter(landed) == {p: 3 for p in range(partitions)}
    assert len(set(drawn)) == len(drawn)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in drawn)


def test_plain_random_ids_where_there_is_nothing_to_spread():
    for ids in (SpreadIds(None), SpreadIds(MemoryBus(partitions=1))):
        drawn = {ids.next() for _ in range(50)}
        assert len(drawn) == 50
        assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in drawn)


def test_hashing_alone_would_crowd_a_few_interviews():
    """Why the ids are drawn: the same number of plain random ids crowds partitions."""
    bus = MemoryBus(partitions=4)
    crowded = 0
    for trial in range(200):
        plain = [f"{trial:04d}-{k}" for k in range(4)]
        crowded += len({bus.partition_of(i) for i in plain}) < 4
    spread = SpreadIds(bus)
    assert crowded > 150  # four hashed keys on four partitions rarely use all four
    assert len({bus.partition_of(spread.next()) for _ in range(4)}) == 4
