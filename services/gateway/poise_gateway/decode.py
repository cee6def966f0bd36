"""Decode an answer into sampled RGB frames and 16 kHz mono PCM chunks.

Frames are sampled by presentation time (not by index), so variable frame rates and
dropped frames still give an even sampling. Scaling happens in FFmpeg's swscale while
converting to RGB, which is cheaper than resizing the full-size array afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np

from poise_gateway.errors import MediaRejected
from poise_gateway.probe import open_media, refused_on_ffmpeg_error, video_track

SAMPLE_RATE = 16000


class JpegFrame(NamedTuple):
    """A sampled frame as it travels on the bus."""

    t_s: float
    width: int
    height: int
    jpeg: bytes


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """An RGB frame as JPEG at ``quality`` (OpenCV's libjpeg-turbo, as vision decodes it)."""
    import cv2

    return encode_jpeg_bgr(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), quality)


def encode_jpeg_bgr(bgr: np.ndarray, quality: int) -> bytes:
    """The same JPEG from the frame in OpenCV's own channel order, with no channel swap to pay."""
    import cv2

    ok, jpeg = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return jpeg.tobytes()


def scaled_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    if width <= target_width:
        w, h = width, height
    else:
        w, h = target_width, round(height * target_width / width)
    # Even sizes keep every pixel format and codec happy.
    return max(2, w - w % 2), max(2, h - h % 2)


def _decoded(
    container: av.container.InputContainer, stream: av.stream.Stream, passed_over: _PassedOver | None = None
) -> Iterator[av.frame.Frame]:
    """Every frame of ``stream`` (but those ``passed_over`` lets the decoder skip), skipping
    packets its decoder refuses.

    The probe refused files damaged where it looked; one damaged frame further in must not lose
    the whole answer (a sampled frame or a few milliseconds of sound less).
    """
    for packet in container.demux(stream):
        if passed_over is not None:
            # Read by the decoder for this packet (and handed on to its frame threads with it).
            stream.codec_context.skip_frame = "NONREF" if passed_over.sure(packet.pts) else "DEFAULT"
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            continue
        if passed_over is not None:
            passed_over.decoded(packet.pts)
        yield from frames


class _PassedOver:
    """Which packets hold frames that sampling will surely pass over, so that the decoder need not
    decode them: at 10 of 24-30 frames a second, half of all frames.

    Sampling takes the first frame (in presentation order) of each slot of ``period`` seconds.
    A frame is surely passed over when an earlier frame of its slot was already decoded: packets
    come in decoding order, where a B-frame comes after the later frame it refers to, so that is
    known before the frame is decoded. Only frames no other frame refers to are then skipped
    (FFmpeg's NONREF), so every frame that is decoded comes out exactly as before, and so does
    the sampling (test: ``test_passing_over_frames_samples_the_same_pixels``).
    """

    def __init__(self, period: float, time_base, start: float) -> None:
        self.period = period
        self.time_base = time_base
        self.start = start
        self._first: dict[int, float] = {}  # slot -> earliest time decoded in it

    def _slot(self, pts: int) -> tuple[int, float]:
        t = float(pts * self.time_base) - self.start
        # The sampler's own arithmetic (iter_frames), epsilon included.
        return int(t / self.period + 1e-6), t

    def sure(self, pts: int | None) -> bool:
        if pts is None:
            return False
        slot, t = self._slot(pts)
        first = self._first.get(slot)
        return first is not None and first < t and t + 1e-6 < (slot + 1) * self.period

    def decoded(self, pts: int | None) -> None:
        if pts is None:
            return
        slot, t = self._slot(pts)
        # A frame before the stream's start (t < 0) is never sampled: it does not fill slot 0.
        if t + 1e-6 >= slot * self.period and t < self._first.get(slot, float("inf")):
            self._first[slot] = t


# Frames up to this many pixels decode on one thread: at 640x360 one thread decodes several hundred
# frames a second, far ahead of the models, and frame threads only add their hand-offs (the 79 s
# answer decoded and encoded in 1.8 CPU s on one thread, 2.1 on two, in the same wall time).
_ONE_THREAD_PIXELS = 1024 * 576


# swscale converts a frame on one thread. PyAV's default (0: as many as the machine has) splits every
# frame into slices for threads that are started and joined frame by frame: the same pixels for
# 0.9-1.1 ms of CPU a 640x360 frame, against 0.7 on one thread, and the decoding child's frames are
# far ahead of the models anyway.
_SWSCALE_THREADS = 1


def stream_start_s(stream: av.stream.Stream) -> float:
    """When ``stream`` begins, in seconds of the container's clock (0 where it does not say)."""
    return float(stream.start_time * stream.time_base) if stream.start_time else 0.0


def decode_threads(width: int, height: int) -> int:
    """Decoder threads for frames of ``width`` x ``height``: more only where one would fall behind."""
    if width * height <= _ONE_THREAD_PIXELS:
        return 1
    # Each frame thread holds frames of its own: a few bound the memory a 4K answer needs.
    return min(4, os.cpu_count() or 1)


def iter_frames(
    path: Path, sample_fps: float, target_width: int, channels: str = "rgb24"
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(t_s, pixels)`` at about ``sample_fps`` frames per second of media time.

    ``channels`` is ``rgb24`` (what the models take) or ``bgr24`` (what OpenCV encodes): the same
    values in the other order, which swscale writes in its one pass where the frame keeps its size.
    """
    if channels not in ("rgb24", "bgr24"):
        raise ValueError(f"channels must be rgb24 or bgr24, not {channels!r}")
    period = 1.0 / sample_fps
    next_t = 0.0
    with refused_on_ffmpeg_error("corrupt", "the video could not be decoded to the end"), open_media(path) as container:
        stream = video_track(container)
        if stream is None:
            raise MediaRejected("no_video", "the file has no video track")
        threads = decode_threads(stream.codec_context.width, stream.codec_context.height)
        if threads > 1:
            stream.thread_type = "AUTO"  # frame threads: decode uses several cores
        stream.codec_context.thread_count = threads
        start = stream_start_s(stream)
        for frame in _decoded(container, stream, _PassedOver(period, stream.time_base, start)):
            if frame.pts is None:
                continue
            t = float(frame.pts * stream.time_base) - start
            if t + 1e-6 < next_t:
                continue
            w, h = scaled_size(frame.width, frame.height, target_width)
            if channels == "bgr24" and (w, h) != (frame.width, frame.height):
                # Scaled, swscale's BGR is not its RGB reordered (it interpolates differently):
                # every caller gets the RGB frame's values.
                import cv2

                pixels = cv2.cvtColor(
                    frame.to_ndarray(width=w, height=h, format="rgb24", threads=_SWSCALE_THREADS), cv2.COLOR_RGB2BGR
                )
            else:
                pixels = frame.to_ndarray(width=w, height=h, format=channels, threads=_SWSCALE_THREADS)
            # PyAV may hand back padded rows; models need contiguous memory.
            yield max(0.0, t), np.ascontiguousarray(pixels)
            # The epsilon keeps 0.6 / 0.2 = 2.999... from sampling the same slot twice.
            next_t = (int(t / period + 1e-6) + 1) * period


def iter_audio(path: Path, chunk_s: float) -> Iterator[tuple[float, bytes]]:
    """Yield ``(t_s, pcm)``: signed 16-bit little-endian mono at 16 kHz, ``chunk_s`` long.

    The sound is on the frames' clock (:func:`iter_frames`): its sample at ``t_s`` plays with the
    frame at ``t_s``, however late or early the audio track starts against the video track.
    """
    chunk_samples = int(round(chunk_s * SAMPLE_RATE))
    if chunk_samples < 1:
        raise ValueError(f"chunk_s must be at least one sample (1/{SAMPLE_RATE} s), not {chunk_s!r}")
    with refused_on_ffmpeg_error("corrupt", "the audio could not be decoded to the end"), open_media(path) as container:
        if not container.streams.audio:
            raise MediaRejected("no_audio", "the video has no audio track")
        yield from _chunked(_on_video_clock(container, container.streams.audio[0]), chunk_samples)


def _on_video_clock(container: av.container.InputContainer, audio: av.stream.Stream) -> Iterator[np.ndarray]:
    """The audio track as 16 kHz mono samples whose first one plays at the video's 0 s.

    The audio service measures every time (speech segments, pauses, word times, the onset of
    speech) by counting samples from the first one it is given, and chunk times only follow from
    that count: so the gap before audio that starts late is filled with silence, rather than every
    chunk's time shifted, and sound from before the first frame is cut, as frames before it are
    (no picture, no evidence to point at).
    """
    video = video_track(container)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    to_cut = 0
    first = True
    for frame in _decoded(container, audio):
        if first:
            offset = _offset_samples(frame, audio, video)
            yield from _silence(offset)
            to_cut, first = max(0, -offset), False
        for out in resampler.resample(frame):
            samples, to_cut = _cut(out.to_ndarray().reshape(-1), to_cut)
            yield samples
    for out in resampler.resample(None):
        samples, to_cut = _cut(out.to_ndarray().reshape(-1), to_cut)
        yield samples


def _offset_samples(first: av.AudioFrame, audio: av.stream.Stream, video: av.stream.Stream | None) -> int:
    """How many samples after the video's start the audio's ``first`` decoded frame plays
    (negative: before it); 0 in a file without video, whose sound starts at its own 0 s."""
    if video is None:
        return 0
    # The decoded frame's own time before the stream header's: the header may count packets that
    # decode to nothing (a refused packet, priming the decoder drops).
    audio_start = first.time if first.time is not None else stream_start_s(audio)
    return int(round((audio_start - stream_start_s(video)) * SAMPLE_RATE))


def _silence(samples: int) -> Iterator[np.ndarray]:
    """``samples`` of silence (none if not positive), a second at a time: a gap as long as the
    answer may be does not sit in memory at once."""
    for start in range(0, max(0, samples), SAMPLE_RATE):
        yield np.zeros(min(SAMPLE_RATE, samples - start), dtype=np.int16)


def _cut(samples: np.ndarray, to_cut: int) -> tuple[np.ndarray, int]:
    """``samples`` without their first ``to_cut``, and how many are still to cut after them."""
    return samples[to_cut:], max(0, to_cut - samples.size)


def _chunked(pieces: Iterator[np.ndarray], chunk_samples: int) -> Iterator[tuple[float, bytes]]:
    """``pieces`` of samples regrouped into chunks of ``chunk_samples`` (the last may be shorter),
    each with the time of its first sample."""
    pending: list[np.ndarray] = []
    pending_len = 0
    emitted = 0
    for piece in pieces:
        if not piece.size:
            continue
        pending.append(piece)
        pending_len += piece.size
        if pending_len < chunk_samples:
            continue
        joined = np.concatenate(pending)
        whole = pending_len - pending_len % chunk_samples
        for start in range(0, whole, chunk_samples):
            yield (emitted + start) / SAMPLE_RATE, joined[start : start + chunk_samples].astype("<i2").tobytes()
        emitted += whole
        rest = joined[whole:]
        pending, pending_len = ([rest] if rest.size else []), rest.size
    if pending_len:
        yield emitted / SAMPLE_RATE, np.concatenate(pending).astype("<i2").tobytes()
