"""Build a long answer from real recordings, for benchmarks.

Video: the Pexels face clip repeated; audio: the 60 s lecture, then JFK's inaugural
sentence, then silence, cut to the video's length. Both streams are real speech and a
real face, so every stage does its real work. Cached under bench/.cache/.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
CACHE = REPO / "bench" / ".cache"
RATE = 16000


def _audio(path: Path) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
    parts = []
    with av.open(str(path)) as src:
        for frame in src.decode(audio=0):
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(parts)


def build_long_answer(repeats: int = 4, out: Path | None = None) -> Path:
    out = out or CACHE / f"long_answer_x{repeats}.mp4"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    video = MEDIA / "pexels_face_20s.mp4"
    speech = np.concatenate([_audio(MEDIA / "lecture_60s.wav"), _audio(MEDIA / "jfk.flac")])
    tmp = out.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as dst:
        with av.open(str(video)) as probe:
            vsrc = probe.streams.video[0]
            vdst = dst.add_stream_from_template(vsrc)
            clip_ticks = int(vsrc.duration) if vsrc.duration else int(probe.duration / av.time_base / vsrc.time_base)
            time_base = vsrc.time_base
        adst = dst.add_stream("aac", rate=RATE, layout="mono")
        for n in range(repeats):
            with av.open(str(video)) as src:
                for packet in src.demux(src.streams.video[0]):
                    if packet.dts is None:
                        continue
                    packet.pts += n * clip_ticks
                    packet.dts += n * clip_ticks
                    packet.stream = vdst
                    dst.mux(packet)
        total_s = float(repeats * clip_ticks * time_base)
        samples = np.zeros(int(total_s * RATE), dtype=np.float32)
        samples[: min(samples.size, speech.size)] = speech[: samples.size]
        for start in range(0, samples.size, 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[start : start + 1024].reshape(1, -1)), format="flt", layout="mono"
            )
            frame.sample_rate = RATE
            frame.pts = start
            for packet in adst.encode(frame):
                dst.mux(packet)
        for packet in adst.encode(None):
            dst.mux(packet)
    tmp.replace(out)
    return out
