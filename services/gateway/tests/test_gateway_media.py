"""Probing, validation and decoding on real recordings and on files made here."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from poise_common.bus.memory import MemoryBus
from poise_common.messages import (
    AnswerMediaDone, AudioChunk, AudioEnd, Envelope, Frame, FramesEnd, InterviewOpened, Question, Topics,
)
from poise_common.settings import GatewaySettings
from poise_gateway.decode import decode_threads, iter_audio, iter_frames, scaled_size
from poise_gateway.errors import MediaRejected
from poise_gateway.probe import probe
from poise_gateway.service import AnswerUpload, Gateway, validate_uploads


def test_probe_reads_the_facts_of_real_videos(media_dir):
    info = probe(media_dir / "pexels_face_20s.mp4", GatewaySettings())
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (640, 360, "h264", "aac")
    assert info.duration_s == pytest.approx(19.7, abs=0.1)
    assert info.fps == pytest.approx(23.976, abs=0.01)
    hevc = probe(media_dir / "face_noface.mov", GatewaySettings())
    assert hevc.video_codec == "hevc" and hevc.width == 960


@pytest.mark.parametrize(
    ("name", "code"),
    [("jfk.flac", "no_video"), ("lecture_60s.wav", "no_video"), ("astronaut.png", "not_video")],
)
def test_probe_refuses_what_is_not_an_interview_video(media_dir, name, code):
    with pytest.raises(MediaRejected) as info:
        probe(media_dir / name, GatewaySettings())
    assert info.value.code == code


@pytest.mark.parametrize(
    ("limits", "code"),
    [
        (GatewaySettings(max_file_bytes=1000), "too_large"),
        (GatewaySettings(max_duration_s=10), "too_long"),
        (GatewaySettings(max_width=320), "too_big_frame"),
        (GatewaySettings(max_fps=20), "too_fast"),
    ],
)
def test_limits(media_dir, limits, code):
    with pytest.raises(MediaRejected) as info:
        probe(media_dir / "pexels_face_20s.mp4", limits)
    assert info.value.code == code


def test_corrupt_bytes(tmp_path, media_dir):
    data = bytearray((media_dir / "single_face.mp4").read_bytes())
    rng = np.random.default_rng(1)
    for pos in rng.integers(0, len(data), 2000):
        data[pos] = rng.integers(0, 256)
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(data[:1000]) + os.urandom(5000))
    with pytest.raises(MediaRejected):
        probe(path, GatewaySettings())


def test_frames_are_sampled_by_time_and_scaled(media_dir):
    frames = list(iter_frames(media_dir / "face_noface.mov", 5.0, 480))
    times = [t for t, _ in frames]
    assert 30 <= len(frames) <= 34  # 6.4 s at 5 fps
    assert all(b > a for a, b in zip(times, times[1:]))
    assert max(np.diff(times)) < 0.3
    assert all(rgb.shape == (270, 480, 3) and rgb.flags["C_CONTIGUOUS"] for _, rgb in frames)


def _every_frame_sampled(path: Path, sample_fps: float) -> tuple[list[tuple[float, np.ndarray]], int]:
    """The sampling done the plain way: every frame decoded, the first of each slot kept; and how
    many frames that decoded."""
    import av

    period, next_t, kept, count = 1.0 / sample_fps, 0.0, [], 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        for frame in container.decode(stream):
            count += 1
            t = float(frame.pts * stream.time_base) - start
            if t + 1e-6 < next_t:
                continue
            w, h = scaled_size(frame.width, frame.height, 640)
            kept.append((max(0.0, t), frame.to_ndarray(width=w, height=h, format="rgb24")))
            next_t = (int(t / period + 1e-6) + 1) * period
    return kept, count


@pytest.mark.parametrize("name", ["pexels_face_20s.mp4", "single_face.mp4", "talking_head_2.mp4", "face_noface.mov"])
@pytest.mark.parametrize("sample_fps", [5.0, 10.0, 15.0])
def test_passing_over_frames_samples_the_same_pixels(media_dir, name, sample_fps):
    """The decoder skips frames that sampling passes over and nothing refers to; what is sampled
    is the same frames, pixel for pixel, as decoding every frame gives (and converting each with
    swscale's default threads, where iter_frames converts on one)."""
    import av

    from poise_gateway.decode import _decoded, _PassedOver

    path = media_dir / name
    plain, all_frames = _every_frame_sampled(path, sample_fps)
    sampled = list(iter_frames(path, sample_fps, 640))
    assert [t for t, _ in sampled] == [t for t, _ in plain] and len(sampled) > 10
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(sampled, plain))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        decoded = sum(1 for _ in _decoded(container, stream, _PassedOver(1.0 / sample_fps, stream.time_base, start)))
    assert len(sampled) <= decoded <= all_frames
    if name == "pexels_face_20s.mp4":  # H.264 with B-frames that nothing refers to: fewer decoded
        assert decoded < 0.85 * all_frames, (decoded, all_frames)


def test_padded_widths_come_back_contiguous(media_dir):
    _, rgb = next(iter_frames(media_dir / "talking_head_3.mp4", 5.0, 1000))
    assert rgb.shape == (590, 590, 3) and rgb.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("name", ["single_face.mp4", "face_noface.mov"])  # kept at its size; scaled
def test_frames_in_bgr_are_the_rgb_frames_in_the_other_order(media_dir, name):
    rgb = list(iter_frames(media_dir / name, 5.0, 640))
    bgr = list(iter_frames(media_dir / name, 5.0, 640, "bgr24"))
    assert [t for t, _ in bgr] == [t for t, _ in rgb] and len(rgb) > 5
    assert all(np.array_equal(b, r[:, :, ::-1]) and b.flags["C_CONTIGUOUS"] for (_, b), (_, r) in zip(bgr, rgb))
    with pytest.raises(ValueError, match="rgb24 or bgr24"):
        next(iter_frames(media_dir / name, 5.0, 640, "gray"))


def test_frames_decode_on_one_thread_unless_large():
    assert decode_threads(640, 360) == decode_threads(1024, 576) == 1
    assert decode_threads(1920, 1080) == min(4, os.cpu_count() or 1)


def test_scaled_size_keeps_aspect_and_even():
    assert scaled_size(1920, 1080, 640) == (640, 360)
    assert scaled_size(320, 240, 640) == (320, 240)
    assert scaled_size(845, 845, 640) == (640, 640)


def test_audio_is_16k_mono_chunks_covering_the_whole_track(media_dir):
    chunks = list(iter_audio(media_dir / "pexels_face_20s.mp4", 1.0))
    assert [t for t, _ in chunks[:3]] == [0.0, 1.0, 2.0]
    total = sum(len(pcm) for _, pcm in chunks) / 2 / 16000
    assert total == pytest.approx(19.7, abs=0.1)
    assert all(len(pcm) == 32000 for _, pcm in chunks[:-1])


def test_validate_names_the_bad_answer(media_dir, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    uploads = [
        AnswerUpload(Question(question_id="q1"), media_dir / "single_face.mp4"),
        AnswerUpload(Question(question_id="q2"), empty),
    ]
    with pytest.raises(MediaRejected) as info:
        validate_uploads(uploads, GatewaySettings())
    assert info.value.answer_index == 1 and info.value.code == "empty"


def test_gateway_publishes_frames_audio_and_counts(media_dir):
    async def scenario():
        bus = MemoryBus(partitions=2, capacity=10_000)
        await bus.start()
        gateway = Gateway(bus, GatewaySettings(sample_fps=5))
        upload = AnswerUpload(Question(question_id="q1", text="Why?"), media_dir / "single_face.mp4")
        [info] = gateway.validate([upload])
        await gateway.open_interview("iv1", "t1", "generic", [upload.question])
        await gateway.publish_answer("iv1", "t1", 0, upload, info)
        out = {}
        for topic in (Topics.MEDIA_FRAMES, Topics.MEDIA_AUDIO, Topics.MEDIA_CONTROL):
            out[topic] = [Envelope.from_bytes(v) for v in await bus.read_all(topic)]
        await bus.stop()
        return out

    out = asyncio.run(scenario())
    frames = out[Topics.MEDIA_FRAMES]
    assert all(isinstance(e.payload, Frame) for e in frames[:-1])
    assert isinstance(frames[-1].payload, FramesEnd) and frames[-1].payload.count == len(frames) - 1
    assert [e.seq for e in frames] == list(range(len(frames)))
    assert 11 <= len(frames) - 1 <= 13  # 2.4 s at 5 fps
    audio = out[Topics.MEDIA_AUDIO]
    assert all(isinstance(e.payload, AudioChunk) for e in audio[:-1])
    assert isinstance(audio[-1].payload, AudioEnd) and audio[-1].payload.question == "Why?"
    control = out[Topics.MEDIA_CONTROL]
    assert isinstance(control[0].payload, InterviewOpened)
    done = control[1].payload
    assert isinstance(done, AnswerMediaDone)
    assert (done.frame_count, done.audio_count) == (len(frames) - 1, len(audio) - 1)
    assert {e.answer_id for e in frames + audio} == {"iv1-a1"}
