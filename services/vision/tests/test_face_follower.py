"""The face found and followed outside MediaPipe's graph measures what MediaPipe's own graph
measures (real recordings, see ../shared/media/SOURCES.md)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from poise_common.inference.face_finder import FaceFinder, region
from poise_common.inference.face_follower import FaceFollower, _OneEuro
from poise_common.inference.face_pose import METADATA_MEMBER, FacePose
from poise_common.inference.faces import FIND_SCORE, LOOK_EVERY, LOOK_SCORE, FaceLandmarkerRunner, MediaPipeLandmarker
from poise_common.settings import PoiseSettings
from poise_devstack.face_checks import two_faces_side_by_side
from poise_vision.face_geometry import head_pose_deg
from test_face_media import sample_frames

pytestmark = pytest.mark.media

MODEL = PoiseSettings().vision.face_model_path


def both_ways(frames: list[tuple[float, np.ndarray]]):
    """Every frame's faces from the runner with the follower and with MediaPipe alone."""
    results = {}
    for follower in (False, True):
        with FaceLandmarkerRunner(MODEL, 2, follower=follower) as runner:
            results[follower] = [runner.detect(rgb, int(t * 1000)) for t, rgb in frames]
    return results[False], results[True]


@pytest.mark.parametrize(("clip", "landmarks_p99_px", "blendshapes_max"), [
    # 16:9 with the head turning and tilting by 25 degrees (the z projection matters there).
    ("pexels_face_20s.mp4", 1.0, 0.05),
    # Square, close up: a larger face in pixels.
    ("talking_head_2.mp4", 2.0, 0.05),
    # The face goes, a cartoon comes: the follower loses the face where MediaPipe does.
    ("face_noface.mov", 0.5, 0.02),
])
def test_the_follower_measures_what_mediapipe_measures(media_dir: Path, clip: str, landmarks_p99_px: float,
                                                       blendshapes_max: float):
    frames = list(sample_frames(media_dir / clip, 10.0))
    mediapipe, followed = both_ways(frames)
    height, width = frames[0][1].shape[:2]

    assert [faces.count for faces in followed] == [faces.count for faces in mediapipe]
    pairs = [(a, b) for a, b in zip(mediapipe, followed) if a.count]
    assert len(pairs) >= 20
    # Landmarks: on average a few hundredths of a pixel apart (MediaPipe's own frame-to-frame
    # jitter on a still face is about a pixel).
    offsets = np.array([(np.abs(a.landmarks - b.landmarks)[..., :2] * (width, height)).max(axis=-1) for a, b in pairs])
    assert offsets.mean() < 0.1
    assert np.percentile(offsets.max(axis=(1, 2)), 99) < landmarks_p99_px
    # Blendshapes and head pose: the features built on them.
    assert max(np.abs(a.blendshapes - b.blendshapes).max() for a, b in pairs) < blendshapes_max
    assert np.mean([np.abs(a.blendshapes - b.blendshapes).mean() for a, b in pairs]) < 0.002
    pose_offsets = [np.abs(np.subtract(head_pose_deg(a.matrices[0]), head_pose_deg(b.matrices[0]))).max() for a, b in pairs]
    assert max(pose_offsets) < 0.5


def test_with_two_faces_in_view_both_ways_give_mediapipes_faces(media_dir: Path):
    """Several faces are MediaPipe's graph's either way: the same faces, bit for bit."""
    from poise_common.inference.face_lanes import same_faces

    frames = [(t_ms / 1000, rgb) for t_ms, rgb in two_faces_side_by_side(media_dir)]
    mediapipe, followed = both_ways(frames)
    assert sum(faces.count == 2 for faces in mediapipe) >= len(frames) - LOOK_EVERY - 1
    assert all(same_faces(a, b) for a, b in zip(mediapipe, followed))


def test_face_pose_fits_mediapipes_matrix_to_mediapipes_landmarks(media_dir: Path):
    with zipfile.ZipFile(MODEL) as bundle:
        pose = FacePose.from_metadata(bundle.read(METADATA_MEMBER))
    landmarker = MediaPipeLandmarker(MODEL, 1)
    import mediapipe as mp

    try:
        checked = 0
        for i, (t, rgb) in enumerate(sample_frames(media_dir / "pexels_face_20s.mp4", 2.0)):
            faces = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), int(t * 1000))
            assert faces.count == 1
            matrix = pose.matrix(faces.landmarks[0], rgb.shape[1], rgb.shape[0])
            # Translation up to about 50 (cm), rotation and scale about 1: float32 rounding apart.
            np.testing.assert_allclose(matrix, faces.matrices[0], atol=1e-4, rtol=1e-4)
            checked += 1
        assert checked >= 30
    finally:
        landmarker.close()


def test_the_follower_lets_go_of_a_lost_face_and_of_another_frame_size(media_dir: Path):
    frames = [rgb for _, rgb in list(sample_frames(media_dir / "single_face.mp4", 10.0))[:3]]
    finder, follower = FaceFinder(MODEL), FaceFollower(MODEL)
    with pytest.raises(RuntimeError):
        follower.follow(frames[0], 0)
    (found,) = finder.find(frames[0], FIND_SCORE)
    where = region(found[0], frames[0].shape[1], frames[0].shape[0])

    assert follower.start_from(frames[0], where, 0).count == 1 and follower.following
    assert follower.follow(frames[1], 100).count == 1
    assert follower.follow(np.zeros_like(frames[2]), 200).count == 0
    assert not follower.following

    assert follower.start_from(frames[0], where, 300).count == 1
    assert follower.follow(np.ascontiguousarray(frames[1][:, :-2]), 400).count == 0
    assert not follower.following
    # Where the region holds no face, nothing is followed.
    assert follower.start_from(np.zeros_like(frames[0]), where, 500).count == 0
    assert not follower.following


def test_the_finder_sees_the_faces_mediapipes_detector_and_landmarker_see(media_dir: Path):
    """A look counts the faces MediaPipe's detector counts, and a fresh find's landmarks are
    MediaPipe's landmarker's on the same frame (one face, on a frame it has never seen)."""
    import mediapipe as mp

    from poise_common.inference.faces import _face_detector

    clips = {name: [rgb for _, rgb in sample_frames(media_dir / name, 2.0)]
             for name in ("pexels_face_20s.mp4", "talking_head_3.mp4", "face_noface.mov", "no_face.mp4")}
    clips["two faces"] = [rgb for _, rgb in two_faces_side_by_side(media_dir)][::3]
    finder, follower, detector = FaceFinder(MODEL), FaceFollower(MODEL), _face_detector(MODEL)
    counts, offsets = {0: 0, 1: 0, 2: 0}, []
    try:
        for frames in clips.values():
            for rgb in frames:
                image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
                looked, found = finder.find(rgb, LOOK_SCORE, FIND_SCORE)
                assert len(looked) == len(detector.detect(image).detections)
                counts[min(len(looked), 2)] += 1
                landmarker = MediaPipeLandmarker(MODEL, 1)
                try:
                    expected = landmarker.detect(image, 0)
                finally:
                    landmarker.close()
                faces = follower.start_from(rgb, region(found[0], rgb.shape[1], rgb.shape[0]), 0) if found else None
                assert (faces.count if faces else 0) == expected.count
                if expected.count:
                    offsets.append((np.abs(faces.landmarks - expected.landmarks)[..., :2] * rgb.shape[1::-1]).max())
    finally:
        finder.close()
        detector.close()
    assert min(counts.values()) >= 5, counts  # frames with no face, one, and two were all seen
    assert np.median(offsets) < 0.1 and max(offsets) < 0.5


def test_one_euro_passes_the_first_value_and_out_of_order_times_through():
    smoothing = _OneEuro()
    first = np.array([[10.0, 20.0, 0.0]])
    np.testing.assert_array_equal(smoothing.apply(0, first, 100.0), first)
    moved = first + 1.0
    smoothed = smoothing.apply(100, moved, 100.0)
    assert np.all((smoothed > first) & (smoothed < moved))
    # A time not after the last passes through untouched and leaves the state as it was.
    np.testing.assert_array_equal(smoothing.apply(100, moved + 5.0, 100.0), moved + 5.0)
    again = smoothing.apply(200, moved, 100.0)
    assert np.all(again > smoothed)
