"""Face lanes on real recordings (see ../shared/media/SOURCES.md): several landmarkers on one
answer give exactly the faces one landmarker following the whole answer finds.

The two-face clip (``poise_devstack.face_checks``) puts two real recordings side by side: with
both faces followed, MediaPipe stops detecting, and a fresh start finds other faces than the
frames before would have given: lanes that ran ahead must then give way to the chain.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from poise_common.inference.backend import FACE
from poise_common.inference.face_lanes import FaceLanes, same_faces
from poise_common.inference.faces import FaceLandmarkerRunner, RawFaces, decode_jpeg_rgb
from poise_common.inference.local import LocalBackend
from poise_common.metrics import InferenceMetrics
from poise_common.settings import PoiseSettings
from poise_devstack.face_checks import two_faces_side_by_side
from poise_gateway.decode import encode_jpeg, iter_frames

QUALITY = 85


def _as_decoded(frames: list[tuple[int, np.ndarray]]) -> list[tuple[int, bytes, np.ndarray]]:
    """(t_ms, JPEG, the RGB the JPEG decodes to): what the lanes see, for runners fed directly."""
    out = []
    for t_ms, rgb in frames:
        jpeg = encode_jpeg(rgb, QUALITY)
        out.append((t_ms, jpeg, decode_jpeg_rgb(jpeg)))
    return out


@pytest.fixture(scope="module")
def two_faces(media_dir) -> list[tuple[int, bytes, np.ndarray]]:
    return _as_decoded(two_faces_side_by_side(media_dir))


@pytest.fixture(scope="module")
def one_face(media_dir) -> list[tuple[int, bytes, np.ndarray]]:
    frames = iter_frames(media_dir / "pexels_face_20s.mp4", 10, 640)
    return _as_decoded([(int(round(t * 1000)), rgb) for t, rgb in frames][:60])


def _runner(max_faces: int = 2) -> FaceLandmarkerRunner:
    return FaceLandmarkerRunner(PoiseSettings().vision.face_model_path, max_faces)


def _through(runner: FaceLandmarkerRunner, frames) -> list[RawFaces]:
    return [runner.detect(rgb, t_ms) for t_ms, _, rgb in frames]


def _all_same(a: list[RawFaces], b: list[RawFaces]) -> bool:
    return len(a) == len(b) and all(same_faces(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("max_faces", [2, 1])
def test_starting_over_gives_what_a_new_landmarker_gives(two_faces, max_faces):
    seam = 23
    with _runner(max_faces) as whole:
        followed = _through(whole, two_faces)
    assert sum(raw.count == max_faces for raw in followed) >= len(two_faces) - 2
    with _runner(max_faces) as new:
        fresh = _through(new, two_faces[seam:])
    with _runner(max_faces) as used:
        _through(used, two_faces[:seam])
        used.start_over()
        restarted = _through(used, two_faces[seam:])
    assert _all_same(fresh, restarted)
    # Followed from earlier frames, the same frames give other faces: what lanes must check for.
    assert not any(same_faces(a, b) for a, b in zip(fresh[1:], followed[seam + 1:]))


def _stream(frames, lanes: int, span: int, pause_every: int = 0):
    """The frames through a local face stream, submitted as the vision service does (all ahead);
    ``pause_every``: a pause after that many frames, as frames arriving from a slower gateway.
    The faces, and how the lanes' checks went (as the service's metrics count them)."""
    settings = PoiseSettings(vision={"face_lanes": lanes, "face_span_frames": span})
    registry = CollectorRegistry()

    def counted() -> dict[str, int]:
        return {outcome: int(registry.get_sample_value("poise_vision_face_lane_checks_total", {"outcome": outcome})
                             or 0) for outcome in ("agreed", "differed")}

    async def scenario():
        backend = LocalBackend(settings, whole_pipeline=True)
        backend.metrics = InferenceMetrics(registry, "vision")
        await backend.start({FACE})
        stream = backend.face_stream("a")
        assert stream.depth == 4 + (lanes - 1) * span  # room for a span on every lane
        try:
            futures = []
            for n, (t_ms, jpeg, _) in enumerate(frames):
                futures.append(stream.submit(jpeg, t_ms))
                if pause_every and n % pause_every == pause_every - 1:
                    await asyncio.sleep(0.05)
            faces = await asyncio.gather(*futures)
            assert counted() == stream._lanes.checks
            return faces, counted()
        finally:
            await stream.close()
            await backend.stop()

    return asyncio.run(scenario())


# Bursts of 9 frames, spans of 6: a lane ahead waits for frames mid-span, and in every other burst
# it starts its span 6 frames before the chain can get there (a race a span at a burst's start loses).
@pytest.mark.parametrize(("lanes", "span", "pause_every"), [(2, 7, 0), (3, 5, 0), (2, 6, 9)])
def test_with_one_face_in_view_lanes_run_ahead_and_give_the_chains_faces(one_face, lanes, span, pause_every):
    with _runner() as runner:
        chain = _through(runner, one_face)
    assert all(raw.count == 1 for raw in chain)
    faces, checks = _stream(one_face, lanes, span, pause_every)
    assert _all_same(faces, chain)
    assert checks["differed"] == 0 and checks["agreed"] >= 2, checks  # lanes did run ahead


def test_with_two_faces_followed_the_chain_takes_over_and_the_faces_stay_exact(two_faces):
    with _runner() as runner:
        chain = _through(runner, two_faces)
    faces, checks = _stream(two_faces, lanes=3, span=9)
    assert _all_same(faces, chain)
    assert checks["differed"] == 1, checks  # and then nothing ran ahead again
    one_lane, checks = _stream(two_faces, lanes=1, span=9)
    assert _all_same(one_lane, chain) and checks == {"agreed": 0, "differed": 0}


def test_a_bad_frame_fails_alone_in_a_lane_that_ran_ahead(one_face):
    frames = list(one_face[:30])
    frames[17] = (frames[17][0], b"not a jpeg", None)  # inside the second span of 10
    good = [f for n, f in enumerate(frames) if n != 17]
    with _runner() as runner:
        chain = _through(runner, good)
    settings = PoiseSettings(vision={"face_lanes": 2, "face_span_frames": 10})

    async def scenario():
        backend = LocalBackend(settings)
        await backend.start({FACE})
        stream = backend.face_stream("a")
        futures = [stream.submit(jpeg, t_ms) for t_ms, jpeg, _ in frames]
        results = await asyncio.gather(*futures, return_exceptions=True)
        await stream.close()
        await backend.stop()
        return results

    results = asyncio.run(scenario())
    assert isinstance(results[17], ValueError) and "not a decodable JPEG" in str(results[17])
    assert _all_same([r for n, r in enumerate(results) if n != 17], chain)


def test_closing_with_frames_in_flight_stops_every_lane():
    """A replayed or abandoned answer closes its stream with frames still queued: the lanes stop
    after the frame they are on, every landmarker is closed, and queued frames are cancelled."""
    closed, started = [], threading.Event()

    def detect(lane, rgb, t_ms, start_over):
        started.set()
        time.sleep(0.02)
        return RawFaces.empty()

    lanes = FaceLanes(2, 5, decode=lambda jpeg: np.zeros((4, 4, 3), np.uint8), detect=detect,
                      close_lane=closed.append)
    results = [lanes.submit(b"x", n * 100) for n in range(40)]
    assert started.wait(5)
    loops = lanes.close()
    for loop in loops:
        loop.result(timeout=5)
    assert sorted(closed) == [0, 1]
    assert any(r.cancelled() for r in results)
    assert all(r.done() for r in results)
    with pytest.raises(RuntimeError):
        lanes.submit(b"x", 9999)


def test_lanes_default_to_the_cpus_this_process_can_use(monkeypatch):
    import poise_common.inference.local as local

    for usable, lanes in ((1, 1), (2, 2), (3, 3), (16, 4)):
        monkeypatch.setattr(local, "usable_cpus", lambda usable=usable: usable)
        assert LocalBackend(PoiseSettings()).face_lanes == lanes
    assert LocalBackend(PoiseSettings(vision={"face_lanes": 6})).face_lanes == 6
