"""The face model's runner and face lanes on real recordings (see ../shared/media/SOURCES.md).

A runner follows the main face and looks for others every few frames; several lanes on one
answer give exactly the faces one runner started over at every span finds. The two-face clip
(``poise_devstack.face_checks``) puts two real recordings side by side.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from poise_common.inference.backend import FACE
from poise_common.inference.face_lanes import FaceLanes, same_faces
from poise_common.inference.faces import FaceLandmarkerRunner, RawFaces, decode_jpeg_rgb
from poise_common.inference.local import LocalBackend
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


def _through_spans(runner: FaceLandmarkerRunner, frames, span: int) -> list[RawFaces | None]:
    """One runner started over at every span's first frame; None for a frame that is no image."""
    out = []
    for n, (t_ms, _, rgb) in enumerate(frames):
        if n % span == 0:
            runner.start_over()
        out.append(None if rgb is None else runner.detect(rgb, t_ms))
    return out


def _all_same(a: list[RawFaces], b: list[RawFaces]) -> bool:
    return len(a) == len(b) and all(same_faces(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("max_faces", [2, 1])
def test_starting_over_gives_what_a_new_runner_gives(two_faces, max_faces):
    from poise_common.inference.faces import LOOK_EVERY

    seam = 23
    with _runner(max_faces) as whole:
        followed = _through(whole, two_faces)
    # The second face may wait for the next look.
    assert sum(raw.count == max_faces for raw in followed) >= len(two_faces) - LOOK_EVERY - 1
    with _runner(max_faces) as new:
        fresh = _through(new, two_faces[seam:])
    with _runner(max_faces) as used:
        _through(used, two_faces[:seam])
        used.start_over()
        restarted = _through(used, two_faces[seam:])
    assert _all_same(fresh, restarted)
    # Followed from earlier frames, the same frames give other faces: what lanes must check for.
    assert not any(same_faces(a, b) for a, b in zip(fresh[1:], followed[seam + 1:]))


def test_with_one_face_in_view_looking_for_two_follows_it_as_looking_for_one(one_face):
    """Looks for a second face change nothing while there is none: the face is followed from
    frame to frame, not found afresh by the detector on every frame as MediaPipe does while it
    follows fewer faces than it looks for."""
    with _runner(2) as two, _runner(1) as one:
        assert _all_same(_through(two, one_face), _through(one, one_face))


def test_a_face_coming_into_view_is_seen_within_the_frames_between_looks(one_face, two_faces):
    from poise_common.inference.faces import LOOK_EVERY

    arrives, leaves = 12, 36
    frames = []
    for n, (t_ms, jpeg, rgb) in enumerate(two_faces):
        rgb = rgb.copy()
        if n < arrives or n >= leaves:
            rgb[:, 360:] = 0  # only the left face in view
        frames.append((t_ms, jpeg, rgb))
    with _runner() as runner:
        counts = [raw.count for raw in _through(runner, frames)]
    assert counts[:arrives] == [1] * arrives
    # The next look sees it (frames 15 and 20 here), and the landmarker's own detector finds it then or
    # within a few frames: this small face scores around its threshold.
    seen = arrives + counts[arrives:].index(2)
    assert seen < arrives + 2 * LOOK_EVERY and counts[seen:leaves] == [2] * (leaves - seen), counts
    assert counts[leaves:] == [1] * (len(frames) - leaves), counts


def _stream(frames, lanes: int, span: int, pause_every: int = 0):
    """The frames through a local face stream, submitted as the vision service does (all ahead);
    ``pause_every``: a pause after that many frames, as frames arriving from a slower gateway.
    The faces, or each frame's exception."""
    settings = PoiseSettings(vision={"face_lanes": lanes, "face_span_frames": span})

    async def scenario():
        backend = LocalBackend(settings, whole_pipeline=True)
        await backend.start({FACE})
        stream = backend.face_stream("a")
        assert stream.depth == 4 + (lanes - 1) * span  # room for a span on every lane
        try:
            futures = []
            for n, (t_ms, jpeg, _) in enumerate(frames):
                futures.append(stream.submit(jpeg, t_ms))
                if pause_every and n % pause_every == pause_every - 1:
                    await asyncio.sleep(0.05)
            return await asyncio.gather(*futures, return_exceptions=True)
        finally:
            await stream.close()
            await backend.stop()

    return asyncio.run(scenario())


@pytest.mark.parametrize(("lanes", "span", "pause_every"), [(1, 7, 0), (2, 7, 0), (3, 5, 0), (2, 6, 9)])
def test_lanes_give_one_runners_faces_started_over_at_every_span(one_face, lanes, span, pause_every):
    with _runner() as runner:
        expected = _through_spans(runner, one_face, span)
    assert all(raw.count == 1 for raw in expected)
    assert _all_same(_stream(one_face, lanes, span, pause_every), expected)


def test_with_two_faces_in_view_lanes_give_one_runners_faces(two_faces):
    with _runner() as runner:
        expected = _through_spans(runner, two_faces, 9)
    assert sum(raw.count == 2 for raw in expected) >= len(two_faces) // 2
    assert _all_same(_stream(two_faces, lanes=3, span=9), expected)
    assert _all_same(_stream(two_faces, lanes=1, span=9), expected)


def test_a_bad_frame_fails_alone_in_its_lane(one_face):
    frames = list(one_face[:30])
    frames[17] = (frames[17][0], b"not a jpeg", None)  # inside the second span of 10
    with _runner() as runner:
        expected = _through_spans(runner, frames, 10)
    results = _stream(frames, lanes=2, span=10)
    assert isinstance(results[17], ValueError) and "not a decodable JPEG" in str(results[17])
    assert _all_same([r for n, r in enumerate(results) if n != 17], [r for n, r in enumerate(expected) if n != 17])


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
