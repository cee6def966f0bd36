"""At-least-once in practice: replaying every message of a scored interview changes nothing."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from poise.embedded import EmbeddedPoise, uploads_for
from poise_common.db.models import AnswerPart, Scorecard, VisionFrame
from poise_common.messages import Envelope, Topics
from poise_common.settings import PoiseSettings

ALL_TOPICS = [
    Topics.MEDIA_CONTROL, Topics.MEDIA_FRAMES, Topics.MEDIA_AUDIO, Topics.FEATURES_VISION,
    Topics.FEATURES_AUDIO, Topics.TRANSCRIPTS, Topics.FEATURES_NLP,
]


def counts(poise: EmbeddedPoise) -> dict:
    with poise.store.sessions() as session:
        return {
            "frames": session.scalar(select(func.count()).select_from(VisionFrame)),
            "parts": session.scalar(select(func.count()).select_from(AnswerPart)),
            "scorecards": session.scalar(select(func.count()).select_from(Scorecard)),
        }


@pytest.mark.usefixtures("poise_home")
def test_replaying_every_message_neither_duplicates_nor_changes_the_scorecard(media_dir):
    async def scenario():
        async with EmbeddedPoise(PoiseSettings()) as poise:
            seen: list[tuple[str, Envelope]] = []

            def recorder(topic):
                async def record(env: Envelope) -> None:
                    seen.append((topic, env))
                return record

            for topic in ALL_TOPICS:
                await poise.bus.subscribe([topic], f"recorder-{topic}", recorder(topic))
            card = await poise.score(uploads_for([media_dir / "single_face.mp4"], None))
            while not poise.bus.idle():
                await asyncio.sleep(0.05)
            before = counts(poise)
            replayed = list(seen)
            for topic, env in replayed:
                await poise.bus.publish(topic, env)
            await asyncio.sleep(0.1)
            while not poise.bus.idle():
                await asyncio.sleep(0.05)
            after = counts(poise)
            stored = poise.store.scorecard(card["interview_id"])
            return card, stored, before, after, len(replayed)

    card, stored, before, after, replayed = asyncio.run(scenario())
    assert replayed > 20
    assert before["frames"] > 0 and before["scorecards"] == 1
    assert after == before
    assert stored == card


def test_a_run_tells_its_own_and_live_runs_interviews_from_those_of_dead_ones():
    import os
    import subprocess

    from poise import embedded

    here = embedded.cli_interview_id()
    assert here.startswith(f"cli{os.getpid():x}-") and len(here) == 32
    # This process's id, but not one of its runs: an earlier process with the same id left it.
    assert not embedded._run_alive(here)
    embedded._SCORING_HERE.add(here)
    try:
        assert embedded._run_alive(here)
    finally:
        embedded._SCORING_HERE.discard(here)
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert embedded._run_alive(f"cli{child.pid:x}-0123456789abcdef")
    finally:
        child.kill()
        child.wait()
    assert not embedded._run_alive(f"cli{child.pid:x}-0123456789abcdef")
    assert embedded._run_alive("0123456789abcdef0123456789abcdef")  # a server's: never the command's
