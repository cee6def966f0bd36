"""The memory bus keeps held records on disk, not in memory, and replays them intact."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from poise_common.bus import DeliveryPolicy, current_delivery
from poise_common.bus.memory import MemoryBus
from poise_common.messages import Envelope, Frame, FramesEnd

TOPIC = "spill.frames"
FAST = DeliveryPolicy(max_attempts=2, backoff_s=0.01, backoff_max_s=0.02)


def frame(seq: int) -> Envelope:
    jpeg = os.urandom(2000)  # incompressible, and different per record
    return Envelope(
        interview_id="i1", answer_id="i1-a1", tenant="t", stream="frames", seq=seq,
        payload=Frame(t_s=seq / 10, width=64, height=36, jpeg=jpeg),
    )


def in_memory(bus: MemoryBus) -> int:
    return sum(len(part.records) for parts in bus._topics.values() for part in parts)


def test_held_records_wait_on_disk_and_replay_byte_for_byte(tmp_path: Path):
    async def scenario():
        bus = MemoryBus(partitions=2, capacity=8, spill_dir=str(tmp_path))
        await bus.start()
        sent = [frame(seq) for seq in range(200)]
        first_life: list[int] = []
        peak = 0

        async def holder(env: Envelope) -> None:
            nonlocal peak
            if env.seq == 0:
                current_delivery().hold()  # an open answer: never released in this life
            first_life.append(env.seq)
            peak = max(peak, in_memory(bus))

        member = await bus.subscribe([TOPIC], "g", holder, FAST)
        for env in sent:
            await bus.publish(TOPIC, env)
        while len(first_life) < len(sent):
            await asyncio.sleep(0.01)
        # Everything is read, all of it held: beyond ``capacity`` records it went to disk.
        assert peak <= 2 * bus.capacity + 1
        assert in_memory(bus) <= bus.capacity
        part = next(p for p in bus._topics[bus.topic(TOPIC)] if p.end)
        assert len(part.spilled) >= len(sent) - bus.capacity
        # On disk sealed: no record's bytes can be read there.
        part.spilled._file.seek(0)
        on_disk = part.spilled._file.read()
        assert len(on_disk) > 2000 * len(part.spilled)
        assert not any(env.to_bytes()[-120:-20] in on_disk for env in sent)

        await member.close()  # dies holding seq 0: the next member replays from there
        replayed: list[bytes] = []
        holds = []
        released = asyncio.Event()

        async def finisher(env: Envelope) -> None:
            replayed.append(env.to_bytes())
            if env.seq == 0:
                holds.append(current_delivery().hold())
            if isinstance(env.payload, FramesEnd):
                holds.pop().release()
                released.set()

        await bus.subscribe([TOPIC], "g", finisher, FAST)
        await bus.publish(TOPIC, sent[0].follow("frames", 200, FramesEnd(count=200)))
        await asyncio.wait_for(released.wait(), 20)
        assert replayed[:200] == [env.to_bytes() for env in sent]
        await asyncio.sleep(0.05)
        assert part.base == part.end and len(part.spilled) == 0  # released: memory and disk given back
        await bus.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_spill_file_whose_head_is_released_is_compacted(tmp_path: Path, monkeypatch):
    from poise_common.bus import memory

    monkeypatch.setattr(memory, "_COMPACT_BYTES", 10_000)
    spill = memory._SpillFile(str(tmp_path))
    values = [os.urandom(1000) for _ in range(40)]
    for n, value in enumerate(values):
        spill.append(f"k{n}", value)
    full = spill._end
    spill.drop(25)  # 25 of 40 records released, while later ones are still held
    assert spill._end < full / 2  # copied away from the released head
    assert [spill.read(i) for i in range(len(spill))] == [(f"k{n}", values[n]) for n in range(25, 40)]
    spill.append("k40", b"after")
    assert spill.read(len(spill) - 1) == ("k40", b"after")
    spill.close()
