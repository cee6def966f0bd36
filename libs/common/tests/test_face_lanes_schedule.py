"""FaceLanes' scheduling, against a landmarker model whose state is the faces it found last.

MediaPipe's own landmarkers are in services/vision/tests/test_face_lanes.py; here a landmarker
is a small function of (frame, previous faces) so that thousands of orders of events can be
tried: random frames (some whose faces depend on the previous frame's, as with two faces
followed), lanes, span lengths, frames arriving in bursts and frames taking random time.
Whatever happens, every frame's faces must be those of one landmarker run over all the frames.
"""

from __future__ import annotations

import random
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

    @staticmethod
    def step(frame: int, previous: int | None) -> int:
        return frame * 1000 if frame % 2 == 0 else frame * 1000 + (previous or 0) % 997 + 1

    def decode(self, jpeg: bytes) -> np.ndarray:
        value = int(jpeg.decode())
        if value < 0:
            raise ValueError("frame is not a decodable JPEG")
        return np.array([value])

    def detect(self, lane: int, rgb: np.ndarray, t_ms: int, start_over: bool) -> RawFaces:
        if self.slow:
            time.sleep(self.random.random() * 0.002)
        if start_over:
            self.previous[lane] = None
        self.previous[lane] = self.step(int(rgb[0]), self.previous[lane])
        return _faces(self.previous[lane])


def _one_landmarker(frames: list[int]) -> list[RawFaces | None]:
    previous, out = None, []
    for frame in frames:
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
    return out, scheduler.checks


frame_lists = st.lists(
    st.one_of(st.integers(0, 50).map(lambda v: 2 * v), st.integers(0, 50).map(lambda v: 2 * v + 1), st.just(-1)),
    min_size=0, max_size=90,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frame_lists, lanes=st.integers(1, 4), span=st.integers(2, 9),
       bursts=st.lists(st.integers(1, 20), max_size=6), seed=st.integers(0, 1000), slow=st.booleans())
def test_any_order_of_events_gives_one_landmarkers_faces(frames, lanes, span, bursts, seed, slow):
    got, _ = _through_lanes(frames, lanes, span, bursts, seed, slow)
    expected = _one_landmarker(frames)
    assert len(got) == len(expected)
    for n, (a, b) in enumerate(zip(got, expected)):
        assert (a is None and b is None) or same_faces(a, b), f"frame {n}"


def test_lanes_run_ahead_while_the_faces_are_found_afresh():
    frames = [2 * (n % 40) for n in range(200)]
    got, checks = _through_lanes(frames, lanes=3, span=10, bursts=[], seed=1, slow=True)
    assert all(same_faces(a, b) for a, b in zip(got, _one_landmarker(frames)))
    assert checks["agreed"] >= 5 and checks["differed"] == 0


def test_a_span_that_starts_on_a_frame_depending_on_the_last_keeps_the_chains_faces():
    frames = [2 * (n % 40) + (n == 35) for n in range(200)]  # frame 35, a span's first, depends on 34
    got, checks = _through_lanes(frames, lanes=2, span=5, bursts=[], seed=2, slow=True)
    assert all(same_faces(a, b) for a, b in zip(got, _one_landmarker(frames)))
    assert checks["differed"] <= 1


@pytest.mark.parametrize(("lanes", "span"), [(0, 5), (2, 0)])
def test_lanes_and_spans_must_be_positive(lanes, span):
    with pytest.raises(ValueError):
        FaceLanes(lanes, span, bytes, lambda *a: None, lambda lane: None)
