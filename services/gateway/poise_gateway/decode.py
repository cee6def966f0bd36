"""Decode an answer into sampled RGB frames and 16 kHz mono PCM chunks.

Frames are sampled by presentation time (not by index), so variable frame rates and
dropped frames still give an even sampling. Scaling happens in FFmpeg's swscale while
converting to RGB, which is cheaper than resizing the full-size array afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from poise_gateway.errors import MediaRejected

SAMPLE_RATE = 16000


def scaled_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    if width <= target_width:
        w, h = width, height
    else:
        w, h = target_width, round(height * target_width / width)
    # Even sizes keep every pixel format and codec happy.
    return max(2, w - w % 2), max(2, h - h % 2)


def iter_frames(path: Path, sample_fps: float, target_width: int) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(t_s, rgb)`` at about ``sample_fps`` frames per second of media time."""
    period = 1.0 / sample_fps
    next_t = 0.0
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads: decode uses both cores
            start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base) - start
                if t + 1e-6 < next_t:
                    continue
                w, h = scaled_size(frame.width, frame.height, target_width)
                rgb = frame.to_ndarray(width=w, height=h, format="rgb24")
                # PyAV may hand back padded rows; models need contiguous memory.
                yield max(0.0, t), np.ascontiguousarray(rgb)
                # The epsilon keeps 0.6 / 0.2 = 2.999... from sampling the same slot twice.
                next_t = (int(t / period + 1e-6) + 1) * period
    except av.error.FFmpegError as exc:
        raise MediaRejected("corrupt", "the video could not be decoded to the end") from exc


def iter_audio(path: Path, chunk_s: float) -> Iterator[tuple[float, bytes]]:
    """Yield ``(t_s, pcm)``: signed 16-bit little-endian mono at 16 kHz, ``chunk_s`` long."""
    chunk_samples = int(round(chunk_s * SAMPLE_RATE))
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    pending: list[np.ndarray] = []
    pending_len = 0
    emitted = 0
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    pending_len += out.samples
                while pending_len >= chunk_samples:
                    joined = np.concatenate(pending)
                    yield emitted / SAMPLE_RATE, joined[:chunk_samples].astype("<i2").tobytes()
                    emitted += chunk_samples
                    rest = joined[chunk_samples:]
                    pending, pending_len = ([rest] if rest.size else []), rest.size
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1))
                pending_len += out.samples
    except av.error.FFmpegError as exc:
        raise MediaRejected("corrupt", "the audio could not be decoded to the end") from exc
    if pending_len:
        joined = np.concatenate(pending)
        for start in range(0, joined.size, chunk_samples):
            yield (emitted + start) / SAMPLE_RATE, joined[start : start + chunk_samples].astype("<i2").tobytes()
