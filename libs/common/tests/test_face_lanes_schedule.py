"""FaceLanes' scheduling, against a landmarker model whose state is the faces it found last.

MediaPipe's own landmarkers are in services/vision/tests/test_face_lanes.py; here a landmarker
is a small function of (frame, previous faces) so that thousands of orders of events can be
tried: random frames (most whose faces depend on the previous frame's, as when a face is
followed), lanes, span lengths, frames arriving in bursts and frames taking random time.
Whatever happens, every frame's faces must be those of one landmarker run over all the frames,
started over at each span's first frame.
"""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from poise_common.inference.face_lanes import FaceLanes, same_faces
from poise_common.inference.faces import RawFaces


def _faces(value: int) -> RawFaces:
    return RawFaces(np.full((1, 478, 3), value, np.float32), np.zeros((1, 52), np.float32), np.zeros((1, 4, 4), np.float32))


class Landmarkers:
    """One model landmarker per lane. A frame is an int: even ones are found afresh whatever came
    before (one face in view), odd ones depend on the previous frame's faces (two faces followed);
    -1 fails to decode."""

    def __init__(self, lanes: int, seed: int, slow: bool) -> None:
        self.previous: list[int | None] = [None] * lanes
        self.random = random.Random(seed)
        self.slow = slow
        self.closed: list[int] = []
        self.lock = threading.Lock()
        self.busy, self.most_busy = 0, 0  # lanes in the model now, and at most

    @staticmethod
    def step(frame: int, previous: int | None) -> int:
        return frame * 1000 if frame % 2 == 0 else frame * 1000 + (previous or 0) % 997 + 1

    def decode(self, jpeg: bytes) -> np.ndarray:
        value = int(jpeg.decode())
        if value < 0:
            raise ValueError("frame is not a decodable JPEG")
        return np.array([value])

    def detect(self, lane: int, rgb: np.ndarray, t_ms: int, start_over: bool) -> RawFaces:
        with self.lock:
            self.busy += 1
            self.most_busy = max(self.most_busy, self.busy)
        if self.slow:
            time.sleep(self.random.random() * 0.002)
        with self.lock:
            self.busy -= 1
        if start_over:
            self.previous[lane] = None
        self.previous[lane] = self.step(int(rgb[0]), self.previous[lane])
        return _faces(self.previous[lane])


def _one_landmarker(frames: list[int], span: int) -> list[RawFaces | None]:
    previous, out = None, []
    for n, frame in enumerate(frames):
        if n % span == 0:
            previous = None
        if frame < 0:
            out.append(None)  # fails; the landmarker never saw it
            continue
        previous = Landmarkers.step(frame, previous)
        out.append(_faces(previous))
    return out


def _through_lanes(frames: list[int], lanes: int, span: int, bursts: list[int], seed: int, slow: bool):
    models = Landmarkers(lanes, seed, slow)
    scheduler = FaceLanes(lanes, span, models.decode, models.detect, models.closed.append)
    results, n = [], 0
    for burst in bursts:
        for frame in frames[n:n + burst]:
            results.append(scheduler.submit(str(frame).encode(), 100 * len(results)))
        n += burst
        time.sleep(0.001)
    for frame in frames[n:]:
        results.append(scheduler.submit(str(frame).encode(), 100 * len(results)))
    out = []
    for result in results:
        try:
            out.append(result.result(timeout=20))
        except ValueError:
            out.append(None)
    for loop in scheduler.close():
        loop.result(timeout=5)
    assert sorted(models.closed) == list(range(lanes))
    return out, models.most_busy


frame_lists = st.lists(
    st.one_of(st.integers(0, 50).map(lambda v: 2 * v), st.integers(0, 50).map(lambda v: 2 * v + 1), st.just(-1)),
    min_size=0, max_size=90,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frame_lists, lanes=st.integers(1, 4), span=st.integers(2, 9),
       bursts=st.lists(st.integers(1, 20), max_size=6), seed=st.integers(0, 1000), slow=st.booleans())
def test_any_order_of_events_gives_one_landmarkers_faces(frames, lanes, span, bursts, seed, slow):
    got, _ = _through_lanes(frames, lanes, span, bursts, seed, slow)
    expected = _one_landmarker(frames, span)
    assert len(got) == len(expected)
    for n, (a, b) in enumerate(zip(got, expected)):
        assert (a is None and b is None) or same_faces(a, b), f"frame {n}"


def test_lanes_run_spans_at_once():
    frames = [2 * (n % 40) + 1 for n in range(200)]  # every frame depends on the one before
    got, most_busy = _through_lanes(frames, lanes=3, span=10, bursts=[], seed=1, slow=True)
    assert all(same_faces(a, b) for a, b in zip(got, _one_landmarker(frames, 10)))
    assert most_busy == 3


def test_one_lane_starts_over_at_every_span():
    frames = [2 * (n % 40) + 1 for n in range(30)]
    got, most_busy = _through_lanes(frames, lanes=1, span=10, bursts=[], seed=3, slow=False)
    assert most_busy == 1
    assert same_faces(got[10], _faces(Landmarkers.step(frames[10], None)))
    assert not same_faces(got[10], _faces(Landmarkers.step(frames[10], Landmarkers.step(frames[9], None))))


@pytest.mark.parametrize("lanes", [1, 2])
def test_a_span_whose_first_frame_is_no_image_still_starts_over(lanes):
    frames = [1, 3, 5, -1, 7, 9, 11, 13, 15]  # frame 3 starts the second span of 3
    got, _ = _through_lanes(frames, lanes=lanes, span=3, bursts=[], seed=4, slow=False)
    assert got[3] is None
    assert same_faces(got[4], _faces(Landmarkers.step(7, None)))
    assert all((a is None and b is None) or same_faces(a, b) for a, b in zip(got, _one_landmarker(frames, 3)))


@pytest.mark.parametrize(("lanes", "span"), [(0, 5), (2, 0)])
def test_lanes_and_spans_must_be_positive(lanes, span):
    with pytest.raises(ValueError):
        FaceLanes(lanes, span, bytes, lambda *a: None, lambda lane: None)
