"""An answer's warnings and what may feed its scores at the thresholds: a face seen in few frames,
a short answer. Real recordings go through the same rules in cli/tests/test_scorecard_media.py."""

from __future__ import annotations

import pytest

from poise_common.settings import PoiseSettings
from poise_common.signals import AudioSignals, NlpSignals
from poise_fusion.assemble import EvidenceRules, build_answer
from poise_fusion.framework import get_framework

RULES = EvidenceRules.from_settings(PoiseSettings())
FPS = 10.0
FACE = {"yaw_deg": 0.0, "pitch_deg": 0.0, "roll_deg": 0.0, "gaze_x": 0.0, "gaze_y": 0.0, "eyes_open": True,
        "eye_contact": True, "smile": 0.6, "brow_raise": 0.1, "lip_press": 0.0, "lip_pucker": 0.0, "jaw_open": 0.2,
        "blink": 0.0, "box": (0.3, 0.3, 0.3, 0.3)}


def answer(face_frames: int, frames: int = 20, words: int = 120) -> dict:
    """An answer whose first ``face_frames`` of ``frames`` show a face looking at the camera and smiling."""
    video = [(i / FPS, 1, FACE) if i < face_frames else (i / FPS, 0, None) for i in range(frames)]
    duration = frames / FPS
    audio = AudioSignals(duration_s=duration, speech_s=duration * 0.8, speech_ratio=0.8, pitch_variation_st=3.0,
                         mean_pause_s=0.5)
    nlp = NlpSignals(word_count=words, hedge_rate=1.0, perspective_taking_rate=1.0, sentiment=0.3)
    return build_answer({
        "answer_id": "iv-a1", "question_id": "q1", "questions": [{"question_id": "q1", "text": "Why us?"}],
        "media": {"duration_s": duration, "sample_fps": FPS, "width": 640, "height": 360, "source_fps": 30.0,
                  "frame_count": frames, "audio_count": 2},
        "parts": {"audio": {"signals": audio.model_dump(), "warnings": []}, "nlp": {"signals": nlp.model_dump()},
                  "transcript": {"segments": []}, "vision_end": {"count": frames}},
        "frames": video,
    }, get_framework("generic"), RULES)


def features(result: dict, name: str) -> set[str]:
    return {c["feature"] for c in next(c for c in result["competencies"] if c["name"] == name)["contributions"]}


@pytest.mark.parametrize(("face_frames", "warning"), [
    (20, None),
    (18, None),  # 90 %: the odd missed frame goes unremarked
    (17, "answer q1: a face was found in 85% of the frames; face signals describe those frames only"),
    (10, "answer q1: a face was found in 50% of the frames; face signals describe those frames only"),
])
def test_a_face_in_at_least_the_minimum_share_is_measured(face_frames, warning):
    result = answer(face_frames)
    assert result["signals"]["vision"]["eye_contact_ratio"] == 1.0
    assert result["warnings"] == ([] if warning is None else [warning])
    assert "vision.eye_contact_ratio" in features(result, "confidence")
    assert "vision.smile_ratio" in features(result, "empathy")


@pytest.mark.parametrize("face_frames", [1, 9])
def test_a_face_in_fewer_frames_than_the_minimum_is_left_out_of_scores(face_frames):
    result = answer(face_frames)
    vision = result["signals"]["vision"]
    assert vision["face_presence"] == face_frames / 20
    assert vision["eye_contact_ratio"] is None and vision["smile_ratio"] is None
    assert vision["blink_rate_per_min"] is None and vision["head_yaw_sd_deg"] is None
    assert result["warnings"] == [
        f"answer q1: a face was found in only {face_frames * 5}% of the frames, under the 50% needed; "
        "face signals are null and left out of scores"
    ]
    assert "vision.eye_contact_ratio" not in features(result, "confidence")
    assert "vision.smile_ratio" not in features(result, "empathy")
    # The smiles stay in the answer as observed behaviour with their time range (one frame, 0.1 s,
    # is under the half second a smile episode needs).
    smiles = [e["start_s"] for e in result["episodes"] if e["behaviour"] == "smile"]
    assert smiles == ([] if face_frames == 1 else [0.0])


@pytest.mark.parametrize(("words", "warnings"), [
    (RULES.short_answer_words, []),
    (RULES.short_answer_words - 1,
     [f"answer q1: short answer: {RULES.short_answer_words - 1} words; scores rest on little evidence"]),
    (RULES.min_words, [f"answer q1: short answer: {RULES.min_words} words; scores rest on little evidence"]),
    (RULES.min_words - 1, [f"answer q1: too little speech ({RULES.min_words - 1} words); speech-based "
                           "competencies are marked insufficient evidence"]),
])
def test_a_short_answer_gets_a_warning_and_too_short_a_one_no_score(words, warnings):
    result = answer(20, words=words)
    assert result["warnings"] == warnings
    scored = {c["name"] for c in result["competencies"] if c["status"] == "scored"}
    assert ("confidence" in scored) is (words >= RULES.min_words)
