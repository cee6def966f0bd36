"""Probe and validate an answer's media with PyAV before anything is published.

Everything here reads headers and the first packets only, so a bad file is refused in
milliseconds and nothing downstream ever sees it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av

from poise_common.settings import GatewaySettings
from poise_gateway.errors import MediaRejected

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaInfo:
    """What the gateway needs to know about an accepted answer."""

    size_bytes: int
    container: str
    duration_s: float
    has_video: bool
    width: int | None
    height: int | None
    fps: float | None
    video_codec: str | None
    audio_codec: str
    audio_rate: int
    audio_channels: int


def _duration(container: av.container.InputContainer) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    best = None
    for stream in container.streams:
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
            best = max(best or 0.0, seconds)
    return best


def _demuxed_duration(path: Path, limit_s: float) -> float | None:
    """First packet start to last packet end, reading packets without decoding them.

    For files whose header has no duration: a browser's MediaRecorder writes WebM live and
    never goes back to fill it in. Stops once past ``limit_s`` (the answer is refused anyway).
    """
    start = end = None
    with av.open(str(path), metadata_errors="ignore") as container:
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            begins = float(packet.pts * packet.time_base)
            ends = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            start = begins if start is None else min(start, begins)
            end = ends if end is None else max(end, ends)
            if end - start > limit_s:
                break
    return None if start is None else end - start


def probe(path: Path, limits: GatewaySettings) -> MediaInfo:
    """Return the media's facts, or raise :class:`MediaRejected` saying what is wrong."""
    if not path.is_file():
        raise MediaRejected("not_found", "file not found")
    size = path.stat().st_size
    if size == 0:
        raise MediaRejected("empty", "the file is empty")
    if size > limits.max_file_bytes:
        raise MediaRejected(
            "too_large", f"the file is {size} bytes; the limit is {limits.max_file_bytes} bytes"
        )
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise MediaRejected("unreadable", "not a readable video file") from exc
    with container:
        if container.format.name.endswith("_pipe") or container.format.name == "image2":
            raise MediaRejected("not_video", "the file is a still image, not a video")
        video = next(iter(container.streams.video), None)
        audio = next(iter(container.streams.audio), None)
        if video is None:
            raise MediaRejected("no_video", "the file has no video track")
        if audio is None:
            raise MediaRejected("no_audio", "the video has no audio track")
        duration = _duration(container)
        if duration is None or duration <= 0:
            try:
                duration = _demuxed_duration(path, limits.max_duration_s)
            except av.error.FFmpegError as exc:
                raise MediaRejected("corrupt", "the video is corrupt and cannot be read") from exc
        if duration is None or duration <= 0:
            raise MediaRejected("unreadable", "the video's duration cannot be read")
        if duration > limits.max_duration_s:
            raise MediaRejected(
                "too_long", f"the answer lasts {duration:.0f} s; the limit is {limits.max_duration_s:.0f} s"
            )
        width, height = video.codec_context.width, video.codec_context.height
        if not width or not height:
            raise MediaRejected("unreadable", "the video's frame size cannot be read")
        if width > limits.max_width or height > limits.max_height:
            raise MediaRejected(
                "too_big_frame",
                f"frames are {width}x{height}; the limit is {limits.max_width}x{limits.max_height}",
            )
        rate = video.average_rate or video.guessed_rate
        fps = float(rate) if rate else None
        if fps is not None and fps > limits.max_fps:
            raise MediaRejected("too_fast", f"the frame rate is {fps:.0f} fps; the limit is {limits.max_fps:.0f}")
        _first_frames_decode(container, video, audio)
        return MediaInfo(
            size_bytes=size,
            container=container.format.name,
            duration_s=duration,
            has_video=True,
            width=width,
            height=height,
            fps=fps,
            video_codec=video.codec_context.name,
            audio_codec=audio.codec_context.name,
            audio_rate=audio.codec_context.sample_rate or 0,
            audio_channels=audio.codec_context.channels or 0,
        )


def _first_frames_decode(container, video, audio) -> None:
    """Decode the first frame of each track: a corrupt or unsupported stream fails here, early."""
    got_video = got_audio = False
    try:
        for packet in container.demux(video, audio):
            stream = packet.stream
            if (stream is video and got_video) or (stream is audio and got_audio):
                continue
            for _ in packet.decode():
                if stream is video:
                    got_video = True
                else:
                    got_audio = True
                break
            if got_video and got_audio:
                return
    except av.error.FFmpegError as exc:
        raise MediaRejected("corrupt", "the video is corrupt and cannot be decoded") from exc
    if not got_video:
        raise MediaRejected("corrupt", "no video frame could be decoded")
    if not got_audio:
        raise MediaRejected("corrupt", "no audio could be decoded")
