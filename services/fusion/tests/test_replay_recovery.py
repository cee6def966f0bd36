"""Fusion after a process died between storing an interview's messages and scoring it: replays finish it."""

from __future__ import annotations

import asyncio

import pytest

from poise_common.bus.memory import MemoryBus
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.messages import Envelope, Topics
from poise_common.settings import PoiseSettings
from poise_fusion.service import FusionService
from poise_fusion.store import FusionStore
from test_calibration import messages
from test_withdrawal import OPENED


@pytest.mark.parametrize("replayed", ["announcement", "last part"])
def test_what_a_dead_process_stored_but_never_scored_is_scored_on_a_replay(tmp_path, replayed):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'poise.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    answers = [*messages("iv-a1", "q1"), *messages("iv-a2", "q2")]
    # The dead process: every message stored, and it died before scoring anything.
    dead = FusionStore(sessions)
    for env in [OPENED, *answers]:
        dead.apply(env)

    async def scenario():
        bus = MemoryBus()
        await bus.start()
        service = FusionService(bus, FusionStore(sessions), PoiseSettings())
        # A restarted gateway publishes the interview again; Kafka replays the uncommitted message.
        for env in [OPENED, *answers] if replayed == "announcement" else answers[-1:] + answers[4:5]:
            await service.handle(env)
        events = [Envelope.from_bytes(record).payload for record in await bus.read_all(Topics.SCORECARDS)]
        await bus.stop()
        return events, service.store.interview_status("iv")

    events, status = asyncio.run(scenario())
    engine.dispose()
    finished = [e for e in events if e.type == "interview.scored"]
    assert len(finished) == 1 and [a["answer_id"] for a in finished[0].scorecard["answers"]] == ["iv-a1", "iv-a2"]
    assert status == ("acme", "scored")
