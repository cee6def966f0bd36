"""Small media files made by the tests themselves: bad inputs and edge cases."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: Path,
    *,
    seconds: float = 2.0,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    audio: np.ndarray | None = None,
    audio_rate: int = 16000,
    frames: list[np.ndarray] | None = None,
) -> Path:
    """An MPEG-4 video of grey noise frames (or ``frames``), with ``audio`` if given."""
    width, height = size
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        vstream = out.add_stream("mpeg4", rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        astream = None
        if audio is not None:
            astream = out.add_stream("aac", rate=audio_rate, layout="mono")
        count = int(seconds * fps) if frames is None else len(frames)
        for i in range(count):
            image = frames[i] if frames is not None else rng.integers(90, 110, (height, width, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(vstream.encode(frame))
        out.mux(vstream.encode(None))
        if astream is not None:
            samples = audio.astype(np.float32).reshape(1, -1)
            step = 1024
            for start in range(0, samples.shape[1], step):
                chunk = np.ascontiguousarray(samples[:, start : start + step])
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate = audio_rate
                frame.pts = start
                out.mux(astream.encode(frame))
            out.mux(astream.encode(None))
    return path


def silence(seconds: float, rate: int = 16000) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.float32)
