"""Fusion when the gateway withdraws an interview it published in part (an answer's decode failed)."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from poise_common.bus.memory import MemoryBus
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.db.models import Answer, AnswerPart
from poise_common.messages import Envelope, InterviewOpened, InterviewWithdrawn, Question, Topics
from poise_common.settings import PoiseSettings
from poise_fusion.service import FusionService
from poise_fusion.store import FusionStore
from test_calibration import messages

OPENED = Envelope(interview_id="iv", tenant="acme", stream="control", seq=0, payload=InterviewOpened(
    role="generic", questions=[Question(question_id="q1", text="Why?"), Question(question_id="q2", text="How?")]))
WITHDRAWN = Envelope(interview_id="iv", tenant="acme", stream="withdraw", seq=0,
                     payload=InterviewWithdrawn(answer_ids=["iv-a1", "iv-a2", "other-a1"]))


def test_a_withdrawn_attempt_is_dropped_and_the_next_one_is_scored_alone(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'poise.db'}")
    upgrade(engine)
    sessions = session_factory(engine)

    async def scenario():
        bus = MemoryBus()
        await bus.start()
        service = FusionService(bus, FusionStore(sessions), PoiseSettings())
        # The first attempt: the first answer complete (and scored), the second stopped part-way.
        late = messages("iv-a2", "q2")
        for env in [OPENED, *messages("iv-a1", "q1"), *late[2:4], WITHDRAWN]:
            await service.handle(env)
        # What the analysers were still busy with arrives after the withdrawal, and a replay of it.
        for env in [late[1], late[4], WITHDRAWN]:
            await service.handle(env)
        withdrawn = service.store.interview_status("iv")
        with sessions() as session:
            kept = {a.id: a.status for a in session.scalars(select(Answer))}
            parts = session.scalar(select(AnswerPart.id).where(AnswerPart.answer_id.in_(["iv-a1", "iv-a2"])))
        # The second attempt, under new answer ids.
        for env in [OPENED, *messages("iv-a1-r1", "q1"), *messages("iv-a2-r1", "q2")]:
            await service.handle(env)
        events = [Envelope.from_bytes(record).payload for record in await bus.read_all(Topics.SCORECARDS)]
        await bus.stop()
        return withdrawn, kept, parts, events, service.store.interview_status("iv")

    withdrawn, kept, parts, events, status = asyncio.run(scenario())
    engine.dispose()
    assert withdrawn is None  # open at the gateway again: unknown here until it is published again
    assert kept == {"iv-a1": "withdrawn", "iv-a2": "withdrawn"}  # another interview's id is not touched
    assert parts is None  # what the candidate said in the withdrawn attempt is gone
    assert [e.type for e in events] == ["answer.scored", "answer.scored", "answer.scored", "interview.scored"]
    assert [a["answer_id"] for a in events[-1].scorecard["answers"]] == ["iv-a1-r1", "iv-a2-r1"]
    assert status == ("acme", "scored")
