"""FaceTracker and the vision summary on real recordings (see ../shared/media/SOURCES.md)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from poise_common.behaviour.vision_summary import SMILE_ON, summarise_vision
from poise_common.settings import PoiseSettings
from poise_common.signals import FaceObservation, VisionSignals
from poise_vision.face_tracker import FaceTracker

pytestmark = pytest.mark.media

Frames = list[tuple[float, int, FaceObservation | None]]


def sample_frames(path: Path, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    """(t_s, RGB frame) at about ``fps``: the first decoded frame at or after each tick.

    Ticks follow the clock, not the frame count, so variable-frame-rate files
    (face_noface.mov switches from 30 to 24 fps) are sampled evenly in time.
    """
    period = 1.0 / fps
    next_tick = 0.0
    start: float | None = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            if start is None:
                start = frame.time
            t = frame.time - start
            if t + 1e-3 < next_tick:
                continue
            while next_tick <= t + 1e-3:
                next_tick += period
            yield t, np.ascontiguousarray(frame.to_ndarray(format="rgb24"))


def frame_at(path: Path, t_s: float) -> np.ndarray:
    return next(rgb for t, rgb in sample_frames(path, 25.0) if t >= t_s - 0.02)


def observe_once(rgb: np.ndarray) -> FaceObservation:
    # A fresh tracker per image: VIDEO mode would otherwise carry the face across edits.
    with FaceTracker(PoiseSettings().vision.face_model_path) as tracker:
        count, observation = tracker.observe(rgb, 0.0)
    assert count == 1 and observation is not None
    return observation


def analyse(path: Path, fps: float) -> tuple[Frames, VisionSignals]:
    frames: Frames = []
    with FaceTracker(PoiseSettings().vision.face_model_path) as tracker:
        for t, rgb in sample_frames(path, fps):
            count, observation = tracker.observe(rgb, t)
            frames.append((t, count, observation))
    return frames, summarise_vision(frames, fps)


def test_single_face_smile_onset_and_blink(media_dir: Path):
    fps = 15.0  # blinks need >= 15 fps
    frames, signals = analyse(media_dir / "single_face.mp4", fps)

    assert signals.face_presence > 0.95
    first_smiling = next(t for t, _, obs in frames if obs is not None and obs.smile >= SMILE_ON)
    assert first_smiling == pytest.approx(0.63, abs=0.3)
    smiles = [e for e in signals.episodes if e.behaviour == "smile"]
    assert smiles, "no smile episode"
    assert smiles[0].start_s == pytest.approx(0.63, abs=0.3)
    # The clip holds one blink, near 0.9 s.
    face_minutes = sum(1 for _, _, obs in frames if obs is not None) / fps / 60
    blinks = round(signals.blink_rate_per_min * face_minutes)
    assert 1 <= blinks <= 2
    assert signals.eye_contact_ratio is not None and signals.eye_contact_ratio > 0.8


def test_no_face(media_dir: Path):
    frames, signals = analyse(media_dir / "no_face.mp4", 10.0)
    assert len(frames) >= 35  # 4 s at 10 fps: the file was really decoded
    assert signals.face_presence == 0.0
    assert signals.eye_contact_ratio is None
    assert signals.episodes == []


def test_face_then_cartoon_hevc(media_dir: Path):
    frames, signals = analyse(media_dir / "face_noface.mov", 10.0)
    assert len(frames) >= 60
    assert signals.face_presence == pytest.approx(0.43, abs=0.10)
    # The face comes first, then the cartoon: no face after the switch.
    last_face = max(t for t, _, obs in frames if obs is not None)
    assert last_face < 3.0


def test_pexels_interview_like_clip(media_dir: Path):
    frames, signals = analyse(media_dir / "pexels_face_20s.mp4", 10.0)
    assert signals.frames_analysed >= 190
    assert signals.face_presence > 0.9
    assert signals.multiple_faces_ratio == 0.0
    assert signals.eye_contact_ratio is not None
    assert 0.0 <= signals.eye_contact_ratio <= 1.0
    for _, _, obs in frames:
        if obs is not None:
            angles = (obs.yaw_deg, obs.pitch_deg, obs.roll_deg)
            assert all(math.isfinite(a) and abs(a) <= 180.0 for a in angles)
            assert -1.0 <= obs.gaze_x <= 1.0 and -1.0 <= obs.gaze_y <= 1.0
    assert signals.head_movement_deg_per_s is not None and math.isfinite(signals.head_movement_deg_per_s)


def test_pose_and_gaze_signs_follow_the_image(media_dir: Path):
    """Conventions of face_geometry, checked on frames whose pose was verified by eye."""
    clip = media_dir / "pexels_face_20s.mp4"
    # 19.5 s: face turned towards image left, head tilted clockwise, looking down.
    turned = frame_at(clip, 19.5)
    pose = observe_once(turned)
    assert pose.yaw_deg < -8 and pose.roll_deg < -8 and pose.pitch_deg < 0
    mirrored = observe_once(np.ascontiguousarray(turned[:, ::-1]))
    assert mirrored.yaw_deg == pytest.approx(-pose.yaw_deg, abs=3.0)
    assert mirrored.roll_deg == pytest.approx(-pose.roll_deg, abs=3.0)

    # 14.7 s: head to camera, eyes turned to image right: not eye contact.
    glance = frame_at(clip, 14.7)
    eyes_right = observe_once(glance)
    assert eyes_right.eyes_open and eyes_right.gaze_x > 0.3 and not eyes_right.eye_contact
    assert observe_once(np.ascontiguousarray(glance[:, ::-1])).gaze_x < -0.3

    # Turning the picture 20 degrees counter-clockwise adds 20 degrees of roll.
    upright = frame_at(media_dir / "single_face.mp4", 0.0)
    height, width = upright.shape[:2]
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), 20.0, 1.0)
    tilted = observe_once(cv2.warpAffine(upright, rotation, (width, height)))
    assert tilted.roll_deg - observe_once(upright).roll_deg == pytest.approx(20.0, abs=4.0)


def test_tracker_accepts_padded_frames_and_repeated_timestamps(media_dir: Path):
    rgb = frame_at(media_dir / "single_face.mp4", 0.0)
    # A view with a row stride wider than its width, like PyAV's padded frames.
    padded = np.zeros((rgb.shape[0], rgb.shape[1] + 20, 3), dtype=np.uint8)
    padded[:, : rgb.shape[1]] = rgb
    view = padded[:, : rgb.shape[1]]
    assert not view.flags["C_CONTIGUOUS"]
    with FaceTracker(PoiseSettings().vision.face_model_path) as tracker:
        results = [tracker.observe(view, t) for t in (0.0, 0.0, 0.0004, 0.0)]
    assert [count for count, _ in results] == [1, 1, 1, 1]


def test_tracker_refuses_misuse(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        FaceTracker(tmp_path / "missing.task")
    tracker = FaceTracker(PoiseSettings().vision.face_model_path)
    with pytest.raises(ValueError):
        tracker.observe(np.zeros((10, 10), dtype=np.uint8), 0.0)
    tracker.close()
    tracker.close()  # closing twice is harmless
    with pytest.raises(RuntimeError):
        tracker.observe(np.zeros((10, 10, 3), dtype=np.uint8), 0.0)
