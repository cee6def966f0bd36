"""The vision service's pipelined face stream on real recordings: same features as one frame at a time."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from poise_common.bus.memory import MemoryBus
from poise_common.inference.faces import FACE_METHOD, FaceLandmarkerRunner, MediaPipeLandmarker, decode_jpeg_rgb
from poise_common.inference.local import LocalBackend
from poise_common.messages import Envelope, Frame, FrameFeaturesBatch, FramesEnd, FrameSeen, Topics, VisionEnd
from poise_common.settings import PoiseSettings
from poise_gateway.decode import iter_frames
from poise_vision.face_tracker import MainFace
from poise_vision.service import GROUP, VisionService

pytestmark = pytest.mark.media


def jpeg_frames(path: Path, fps: float = 10.0) -> list[Frame]:
    """Frames as the gateway puts them on the bus: sampled, 640 px wide, JPEG at quality 85."""
    return [
        Frame(
            t_s=round(t, 4), width=rgb.shape[1], height=rgb.shape[0],
            jpeg=cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes(),
        )
        for t, rgb in iter_frames(path, fps, 640)
    ]


def one_at_a_time(frames: list[Frame]) -> list[tuple[int, dict | None]]:
    """(face count, observation) per frame through MediaPipe's public result objects, in order."""
    settings = PoiseSettings()
    main = MainFace()
    out = []
    with FaceLandmarkerRunner(settings.vision.face_model_path, settings.vision.max_faces) as runner:
        runner._direct = None  # the public detect_for_video path
        for frame in frames:
            rgb = decode_jpeg_rgb(frame.jpeg)
            faces = runner.detect(rgb, int(round(frame.t_s * 1000)))
            count, face = main.observe(faces, (frame.width, frame.height), frame.t_s)
            out.append((count, face.model_dump() if face else None))
    return out


def seen_frames(out: list[Envelope]) -> list[FrameSeen]:
    """The frames of every feature batch published, in publishing order; each batch's envelope
    carries its first frame's seq."""
    batches = [env for env in out if isinstance(env.payload, FrameFeaturesBatch)]
    assert all(env.seq == env.payload.frames[0].seq for env in batches)
    return [seen for env in batches for seen in env.payload.frames]


async def through_service(frames: list[Frame], home: Path, batch_frames: int = 50) -> tuple[list[Envelope], list[dict]]:
    """Every frame through VisionService on a memory bus: what it publishes, and its dead letters."""
    bus = MemoryBus(spill_dir=str(home))
    await bus.start()
    out: list[Envelope] = []
    finished = asyncio.Event()

    async def collect(env: Envelope) -> None:
        out.append(env)
        if isinstance(env.payload, VisionEnd):
            finished.set()

    await bus.subscribe([Topics.FEATURES_VISION], "test", collect)
    service = VisionService(bus, LocalBackend(PoiseSettings()), batch_frames=batch_frames)
    await service.start()
    base = Envelope(interview_id="i1", answer_id="i1-a1", tenant="t", stream="frames", seq=0, payload=FramesEnd(count=0))
    for seq, frame in enumerate(frames):
        await bus.publish(Topics.MEDIA_FRAMES, base.follow("frames", seq, frame))
    await bus.publish(Topics.MEDIA_FRAMES, base.follow("frames", len(frames), FramesEnd(count=len(frames))))
    await asyncio.wait_for(finished.wait(), 300)
    dead = [json.loads(r) for r in await bus.read_all(Topics.dead_letter(GROUP))]
    await service.stop()
    await bus.stop()
    return out, dead


def test_direct_result_reading_equals_mediapipes_objects(media_dir: Path):
    # A face, then a cartoon with none: both kinds of result.
    frames = [(t, rgb) for t, rgb in iter_frames(media_dir / "face_noface.mov", 10.0, 640)]
    import mediapipe as mp

    path = PoiseSettings().vision.face_model_path
    counts = set()
    direct, public = MediaPipeLandmarker(path, 2), MediaPipeLandmarker(path, 2)
    try:
        assert direct._direct is not None, "this MediaPipe no longer exposes its C call: the slow path is in use"
        public._direct = None
        for t, rgb in frames:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
            a, b = direct.detect(image, int(t * 1000)), public.detect(image, int(t * 1000))
            counts.add(a.count)
            for name in ("landmarks", "blendshapes", "matrices"):
                x, y = getattr(a, name), getattr(b, name)
                assert x.dtype == y.dtype == np.float32 and x.shape == y.shape
                assert np.array_equal(x, y), name
    finally:
        direct.close()
        public.close()
    assert counts == {0, 1}


def test_a_failed_direct_call_raises_mediapipes_error(media_dir: Path):
    _t, rgb = next(iter_frames(media_dir / "face_noface.mov", 10.0, 640))
    settings = PoiseSettings()
    with FaceLandmarkerRunner(settings.vision.face_model_path, 2, follower=False) as runner:
        assert runner.detect(rgb, 1000).count == 1
        image = runner._mp.Image(image_format=runner._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        # VIDEO mode refuses a timestamp that does not move forward; the call must say so.
        with pytest.raises(ValueError, match="monotonically increasing"):
            runner._one._direct(image, 1000)
        assert runner.detect(rgb, 1100).count == 1  # and the runner carries on


def test_pipelined_service_publishes_the_features_of_one_frame_at_a_time(media_dir: Path, tmp_path: Path):
    frames = jpeg_frames(media_dir / "face_noface.mov")
    expected = one_at_a_time(frames)
    out, dead = asyncio.run(through_service(frames, tmp_path, batch_frames=16))
    assert dead == []
    features = seen_frames(out)
    assert [f.seq for f in features] == list(range(len(frames)))  # every frame, in order
    got = [(f.face_count, f.face.model_dump() if f.face else None) for f in features]
    assert got == expected
    assert any(face is None for _, face in got) and any(face is not None for _, face in got)
    # Full batches, then what was left when the frames ended; the end after them.
    sizes = [len(env.payload.frames) for env in out if isinstance(env.payload, FrameFeaturesBatch)]
    assert sizes == [16] * (len(frames) // 16) + ([len(frames) % 16] if len(frames) % 16 else [])
    assert isinstance(out[-1].payload, VisionEnd) and out[-1].payload.count == len(frames)
    assert out[-1].payload.face_method == f"{FACE_METHOD}/span-{PoiseSettings().vision.face_span_frames}"


def test_a_frame_that_fails_in_flight_is_dead_lettered_and_the_rest_go_on(media_dir: Path, tmp_path: Path):
    frames = jpeg_frames(media_dir / "single_face.mp4")[:12]
    frames[5] = frames[5].model_copy(update={"jpeg": b"not a jpeg"})
    out, dead = asyncio.run(through_service(frames, tmp_path, batch_frames=4))
    assert len(dead) == 1
    assert Envelope.from_bytes(dead[0]["value"].encode()).seq == 5
    assert "ValueError" in dead[0]["error"]
    features = seen_frames(out)
    assert [f.seq for f in features] == [s for s in range(12) if s != 5]
    assert all(f.face_count == 1 for f in features)
    assert isinstance(out[-1].payload, VisionEnd)
