"""What a scorecard says about real recordings (../shared/media, see its SOURCES.md, and the bundled
sample), scored in one process as `poise score` scores them."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

from poise.embedded import EmbeddedPoise, uploads_for
from poise_common.settings import PoiseSettings

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_interview.mp4"


def score(home: Path, paths: list[Path], policy: str | None = None, **fusion) -> dict:
    settings = PoiseSettings(home=home, fusion=fusion)

    async def run() -> dict:
        async with EmbeddedPoise(settings, policy) as poise:
            return await poise.score(uploads_for(paths, None))
    return asyncio.run(run())


def competency(card: dict, name: str) -> dict:
    return next(c for c in card["competencies"] if c["name"] == name)


def features(competency: dict) -> set[str]:
    return {c["feature"] for c in competency["contributions"]}


@pytest.fixture(scope="module")
def sample_card(tmp_path_factory) -> dict:
    return score(tmp_path_factory.mktemp("home"), [SAMPLE])


@pytest.fixture(scope="module")
def brief_face(tmp_path_factory, media_dir) -> Path:
    """face_noface.mov's picture (a face for its first 2.4 s of 6.4, then a cartoon) with JFK's 22
    spoken words: an answer with speech whose face is seen in a minority of the frames."""
    spec = importlib.util.spec_from_file_location("build_sample", REPO / "scripts" / "build_sample.py")
    build_sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_sample)
    out = tmp_path_factory.mktemp("media") / "brief_face.mp4"
    build_sample.build(media_dir / "face_noface.mov", media_dir / "jfk.flac", out)
    return out


def test_the_sample_smile_evidence_is_its_clearest_smile_not_its_first(sample_card):
    # The clip cries first and smiles from about 12 s to its end (SOURCES.md); the smile blendshape
    # fires during both, so evidence chosen by time would show only the crying.
    empathy = competency(sample_card, "empathy")
    smiles = [(e["start_s"], e["end_s"]) for e in empathy["evidence"] if e["kind"] == "episode"]
    assert any(start < 13.0 and end > 19.0 for start, end in smiles), smiles
    assert smiles == sorted(smiles)
    behaviours = {c["behaviour"] for c in empathy["contributions"]}
    assert "smiling on camera" in behaviours and "warm tone" not in behaviours


def test_a_face_seen_in_a_minority_of_frames_is_not_measured_and_says_so(brief_face, tmp_path):
    card = score(tmp_path, [brief_face])
    (answer,) = card["answers"]
    vision = answer["signals"]["vision"]
    presence = vision["face_presence"]
    assert 0.25 < presence < PoiseSettings().fusion.min_face_presence  # about 2.4 s of 6.4
    # Over its few face frames eye contact reads about 1.0: a moment, not the answer's behaviour.
    assert vision["eye_contact_ratio"] is None and vision["smile_ratio"] is None
    assert vision["blink_rate_per_min"] is None
    assert [w for w in card["warnings"] if "face" in w] == [
        f"answer q1: a face was found in only {int(presence * 100)}% of the frames, under the 50% needed; "
        "face signals are null and left out of scores"
    ]
    confidence = competency(card, "confidence")
    # Eye contact drops out like any unmeasured feature: 4 of Confidence's 5 weight is left.
    assert confidence["status"] == "scored" and "vision.eye_contact_ratio" not in features(confidence)
    assert confidence["coverage"] == pytest.approx(0.8)
    assert not any(e["kind"] == "episode" and e["signal"] == "gaze_away" for e in confidence["evidence"])


def test_a_face_above_the_minimum_but_not_throughout_is_measured_with_its_share(brief_face, tmp_path):
    card = score(tmp_path, [brief_face], min_face_presence=0.3)
    vision = card["answers"][0]["signals"]["vision"]
    assert vision["eye_contact_ratio"] is not None and vision["smile_ratio"] is not None
    assert [w for w in card["warnings"] if "face" in w] == [
        f"answer q1: a face was found in {int(vision['face_presence'] * 100)}% of the frames; "
        "face signals describe those frames only"
    ]
    assert "vision.eye_contact_ratio" in features(competency(card, "confidence"))


def test_a_short_answer_is_scored_with_a_warning(sample_card):
    (answer,) = sample_card["answers"]
    words = answer["signals"]["nlp"]["word_count"]
    assert PoiseSettings().nlp.min_words_for_scoring <= words < PoiseSettings().fusion.short_answer_words
    assert f"answer q1: short answer: {words} words; scores rest on little evidence" in sample_card["warnings"]
    assert competency(sample_card, "communication_clarity")["status"] == "scored"


def test_a_policy_that_keeps_most_of_a_competency_out_leaves_it_without_a_score(sample_card, tmp_path):
    eu = score(tmp_path, [SAMPLE], policy="eu")
    confidence = competency(eu, "confidence")
    # Under eu only the hedges (2 of Confidence's weight of 5) may feed it: not a score on one feature.
    assert confidence["status"] == "insufficient_evidence" and confidence["score"] is None
    assert confidence["reason"] == "the eu policy lets only 40% of its weight feed a score, under the 50% it needs"
    assert competency(sample_card, "confidence")["status"] == "scored"
    # Communication clarity keeps 4 of its 6 weight in what was said, and is scored on it.
    clarity = competency(eu, "communication_clarity")
    assert clarity["status"] == "scored" and clarity["coverage"] == pytest.approx(4 / 6, abs=1e-4)
    assert all(f.startswith("nlp.") for f in features(clarity))
