"""New interview ids that take the bus's partitions in turn.

The bus key is the interview id and the transport hashes it to a partition, so every process
agrees where an interview's messages go without asking anyone. With a handful of interviews at
once, though, hashing often puts several on one partition, and so on one worker, while other
workers idle: four interviews on four partitions all land on different ones 9 % of the time.
The ids are drawn so that consecutive ones hash to consecutive partitions. Nothing downstream
changes (the key is still hashed as before); an id is still 128 random bits less the few that
pick its partition.
"""

from __future__ import annotations

import secrets
import uuid
from itertools import count

from poise_common.bus.base import Bus

# Each draw hits the wanted partition with probability 1/partitions; this many misses in a row
# has a chance below 1e-9 even for 64 partitions, and then a plain id is used.
_MAX_DRAWS = 1500


class SpreadIds:
    """``next()`` gives a new interview id (32 hex digits) on the next partition of ``bus``."""

    def __init__(self, bus: Bus | None) -> None:
        self._partition_of = bus.partition_of if bus is not None else None
        self._partitions = bus.partition_count if bus is not None else None
        # A random start, so gateways started together do not all begin on partition 0.
        self._turn = count(secrets.randbelow(self._partitions or 1))

    def next(self) -> str:
        if not self._partitions or self._partitions == 1 or self._partition_of is None:
            return uuid.uuid4().hex
        wanted = next(self._turn) % self._partitions
        for _ in range(_MAX_DRAWS):
            candidate = uuid.uuid4().hex
            if self._partition_of(candidate) == wanted:
                return candidate
        return uuid.uuid4().hex
