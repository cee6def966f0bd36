"""Vision's frame features arrive in batches: stored once per frame, whatever is replayed."""

from __future__ import annotations

import pydantic
import pytest

from poise_common.messages import Envelope, FrameFeatures, FrameFeaturesBatch, FrameSeen, InterviewOpened, Question
from poise_common.signals import FaceObservation
from poise_fusion.store import FusionStore

FACE = FaceObservation(yaw_deg=1.0, pitch_deg=-2.0, roll_deg=0.5, gaze_x=0.1, gaze_y=0.0, eyes_open=True,
                       eye_contact=True, smile=0.3, brow_raise=0.1, lip_press=0.0, lip_pucker=0.0, jaw_open=0.2,
                       blink=0.05, box=(0.3, 0.2, 0.4, 0.5))


def env(seq: int, payload) -> Envelope:
    return Envelope(interview_id="iv", answer_id="iv-a1", tenant="acme", stream="vision", seq=seq, payload=payload)


def batch(seqs: range) -> Envelope:
    frames = [FrameSeen(seq=s, t_s=s / 10, face_count=s % 2, face=FACE if s % 2 else None) for s in seqs]
    return env(seqs[0], FrameFeaturesBatch(frames=frames))


def test_batches_replays_and_single_frames_store_each_frame_once(sessions):
    store = FusionStore(sessions)
    store.apply(Envelope(interview_id="iv", tenant="acme", stream="control", seq=0, payload=InterviewOpened(
        role="generic", questions=[Question(question_id="q1", text="Why?")])))

    assert store.apply(batch(range(0, 4))) == (True, None)
    assert store.apply(batch(range(0, 4))) == (False, None)  # the same batch again: nothing new
    assert store.apply(batch(range(2, 7))) == (True, None)  # a replay cut elsewhere: only 4..6 are new
    # A frame as a worker of an earlier release sent it, one message each.
    assert store.apply(env(7, FrameFeatures(t_s=0.7, face_count=1, face=FACE))) == (True, None)
    assert store.apply(env(7, FrameFeatures(t_s=0.7, face_count=1, face=FACE))) == (False, None)

    frames = store.answer_bundle("iv-a1")["frames"]
    assert [t for t, _, _ in frames] == [s / 10 for s in range(8)]
    assert [count for _, count, _ in frames] == [s % 2 for s in range(8)]
    assert [face for _, _, face in frames] == [FACE.model_dump(mode="json") if s % 2 else None for s in range(8)]


def test_an_empty_batch_is_not_a_message():
    with pytest.raises(pydantic.ValidationError):
        FrameFeaturesBatch(frames=[])
