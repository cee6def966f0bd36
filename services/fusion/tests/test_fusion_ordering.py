"""Fusion when the interview's announcement arrives after an answer is complete (other topic, no order)."""

from __future__ import annotations

import asyncio

from poise_common.bus.memory import MemoryBus
from poise_common.db.engine import create_db_engine, session_factory, upgrade
from poise_common.messages import (
    AnswerMediaDone, AudioFeatures, Envelope, InterviewOpened, NlpFeatures, Question, ScoreEvent, Topics,
    Transcript, VisionEnd,
)
from poise_common.settings import PoiseSettings
from poise_common.signals import AudioSignals, NlpSignals
from poise_fusion.service import FusionService
from poise_fusion.store import FusionStore


def parts(answer_id: str) -> list[tuple[str, Envelope]]:
    def env(stream: str, seq: int, payload) -> Envelope:
        return Envelope(interview_id="iv", answer_id=answer_id, tenant="acme", stream=stream, seq=seq,
                        payload=payload)

    return [
        (Topics.MEDIA_CONTROL, env("control", 1, AnswerMediaDone(
            question_id="q1", duration_s=2.0, frame_count=0, audio_count=2, has_video=True, sample_fps=10.0))),
        (Topics.FEATURES_VISION, env("vision", 0, VisionEnd(count=0))),
        (Topics.TRANSCRIPTS, env("transcript", 0, Transcript(duration_s=2.0, segments=[]))),
        (Topics.FEATURES_AUDIO, env("audio", 0, AudioFeatures(
            signals=AudioSignals(duration_s=2.0, speech_s=0.0, speech_ratio=0.0)))),
        (Topics.FEATURES_NLP, env("nlp", 0, NlpFeatures(signals=NlpSignals(word_count=0)))),
    ]


def test_an_answer_complete_before_the_announcement_waits_for_its_role(tmp_path):
    async def scenario():
        engine = create_db_engine(f"sqlite:///{tmp_path / 'poise.db'}")
        upgrade(engine)
        bus = MemoryBus()
        await bus.start()
        events: list[Envelope] = []

        async def record(env: Envelope) -> None:
            events.append(env)

        await bus.subscribe([Topics.SCORECARDS], "test", record)
        service = FusionService(bus, FusionStore(session_factory(engine)), PoiseSettings())
        for topic, env in parts("iv-a1"):
            await service.handle(env)
        before = list(events)  # nothing may be scored yet: the role is unknown
        opened = Envelope(interview_id="iv", tenant="acme", stream="control", seq=0, payload=InterviewOpened(
            role="sales-development-rep", questions=[Question(question_id="q1", text="Why?")]))
        await service.handle(opened)
        while len(events) < 2:
            await asyncio.sleep(0.01)
        await bus.stop()
        engine.dispose()
        return before, events

    before, events = asyncio.run(scenario())
    assert before == []
    answer, interview = events
    assert isinstance(answer.payload, ScoreEvent) and answer.payload.type == "answer.scored"
    assert answer.answer_id == "iv-a1"
    assert interview.payload.type == "interview.scored"
    assert interview.payload.scorecard["role"] == "sales-development-rep"
    assert "resilience" in {c["name"] for c in interview.payload.scorecard["competencies"]}
    # Its vision end, as from a worker of an earlier release, does not say how faces were measured.
    assert interview.payload.scorecard["answers"][0]["face_method"] is None
