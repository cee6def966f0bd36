"""Probe and validate an answer's media with PyAV before anything is published.

The headers are checked first (format, tracks, codecs, size, duration, frame rate), so most bad
files are refused in milliseconds. Then one pass reads every packet without decoding most of
them: it measures how long the media really lasts (a header can lie), notices a file that ends
before its header says, and decodes all the audio and a sample of video key frames, so a file
that is corrupt further in is refused here rather than half-way through scoring. Run it through
:mod:`poise_gateway.sandbox`: FFmpeg parses hostile bytes here.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.logging

from poise_common.settings import GatewaySettings
from poise_gateway.errors import MediaRejected

log = logging.getLogger(__name__)

# Demuxers (FFmpeg names) a video answer may come in, as people call them.
VIDEO_CONTAINERS = {"mov": "MP4/MOV", "matroska": "Matroska/WebM", "avi": "AVI", "mpegts": "MPEG-TS"}
# Opened only to say precisely why they are refused (audio only, a still image).
_AUDIO_CONTAINERS = ("wav", "flac", "mp3", "ogg", "aac")
_IMAGE_FORMATS = ("png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif", "image2")
VIDEO_CODECS = {
    "h264": "H.264", "hevc": "HEVC", "vp8": "VP8", "vp9": "VP9", "av1": "AV1",
    "mpeg4": "MPEG-4 Part 2", "mpeg2video": "MPEG-2", "mjpeg": "Motion JPEG",
}
AUDIO_CODECS = {
    "aac": "AAC", "mp3": "MP3", "opus": "Opus", "vorbis": "Vorbis", "flac": "FLAC", "alac": "ALAC",
    "ac3": "AC-3", "eac3": "E-AC-3",
}
# Uncompressed PCM of every sample format is accepted too (WAV-style audio in MOV/AVI/Matroska).
_PCM = "pcm_"
# Key frames decoded by the full pass: the first, then one every this many seconds, so a long
# answer's check costs a bounded number of decodes.
_KEY_FRAME_EVERY_S = 10.0
# A file whose packets stop this much before its header's duration was cut short (tracks of
# a whole file end within a frame or two of what its header says).
TRUNCATED_SLACK_S = 0.5
TRUNCATED_SLACK_RATIO = 0.02


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


def supported_formats() -> str:
    """The accepted containers and codecs, in words, for error messages."""
    return (
        f"supported: {', '.join(VIDEO_CONTAINERS.values())} files with "
        f"{', '.join(VIDEO_CODECS.values())} video and {', '.join(AUDIO_CODECS.values())} or PCM audio"
    )


@functools.cache
def open_options() -> dict[str, str]:
    """FFmpeg options that hold every opening of an upload to the accepted formats and codecs."""
    decoders = {
        codec.name
        for name in av.codecs_available
        if (codec := _decoder(name)) is not None and _allowed(codec.canonical_name, codec.type)
    }
    return {
        # Only these demuxers may parse the file: no playlists (HLS, concat) that would open other
        # files or URLs, and none of FFmpeg's hundreds of exotic parsers.
        "format_whitelist": ",".join([*VIDEO_CONTAINERS, *_AUDIO_CONTAINERS, *_IMAGE_FORMATS]),
        "protocol_whitelist": "file",
        # Opening a file decodes a little to learn its parameters: only with accepted decoders.
        "codec_whitelist": ",".join(sorted(decoders)),
    }


def _decoder(name: str) -> av.codec.Codec | None:
    try:
        return av.codec.Codec(name, "r")
    except (ValueError, av.error.FFmpegError):  # an encoder only
        return None


def _allowed(canonical: str, kind: str) -> bool:
    if kind == "video":
        return canonical in VIDEO_CODECS
    return kind == "audio" and (canonical in AUDIO_CODECS or canonical.startswith(_PCM))


def open_media(path: Path) -> av.container.InputContainer:
    """Open ``path`` for reading with only the accepted demuxers, protocols and decoders."""
    return av.open(str(path), metadata_errors="ignore", container_options=open_options())


@contextlib.contextmanager
def refused_on_ffmpeg_error(code: str, message: str) -> Iterator[None]:
    """An FFmpeg failure inside becomes ``MediaRejected(code, message)``.

    Running out of memory is not the file's fault alone: it stays a ``MemoryError`` (PyAV's is
    both) for the sandbox to report as the memory limit.
    """
    try:
        yield
    except MemoryError:
        raise
    except av.error.FFmpegError as exc:
        raise MediaRejected(code, message) from exc


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
    logs: list = []
    try:
        with av.logging.Capture() as logs:
            container = open_media(path)
    except MemoryError:
        raise
    except av.error.ArgumentError as exc:  # recognised, but not a format on the accepted list
        raise MediaRejected("unsupported_container", f"{_refused_format(logs)}; {supported_formats()}") from exc
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise MediaRejected("unreadable", f"not a video file Poise can read ({supported_formats()})") from exc
    with container:
        video, audio = _tracks(container)
        header_duration = _duration(container)
        if header_duration is not None and header_duration > limits.max_duration_s:
            raise _too_long(header_duration, limits)
        width, height, fps = _check_video_header(video, limits)
        with refused_on_ffmpeg_error("corrupt", "the video is corrupt and cannot be read"):
            extent = _full_pass(container, video, audio, limits)
        promised = _tracks_duration(video, audio) or header_duration
        if promised is not None and extent < promised - max(TRUNCATED_SLACK_S, TRUNCATED_SLACK_RATIO * promised):
            raise MediaRejected(
                "truncated",
                f"the file ends after {extent:.1f} s but its header says {promised:.1f} s: "
                "it was cut short (an interrupted upload or recording?)",
            )
        # What the packets cover, not what the header claims (a browser's MediaRecorder writes
        # WebM live and never fills the header's duration in).
        duration = extent
        if duration <= 0:
            raise MediaRejected("unreadable", "the video's duration cannot be read")
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


def _refused_format(logs: list) -> str:
    """The format FFmpeg recognised but was not allowed to open, in words (named when FFmpeg's
    log is on, as the sandbox's children have it)."""
    for _level, name, message in logs:
        if "not on whitelist" in message and name and "," not in name:
            return f"the file's format is {_format_label(name)}, which Poise does not read"
    return "the file's format is not one Poise reads"


def _format_label(name: str) -> str:
    try:
        return av.format.ContainerFormat(name, "r").long_name
    except (ValueError, av.error.FFmpegError):
        return name


def video_track(container: av.container.InputContainer) -> av.VideoStream | None:
    """The first real video track: cover art in a music file is a "video" stream of one picture."""
    return next((s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic), None)


def _tracks(container: av.container.InputContainer) -> tuple[av.VideoStream, av.AudioStream]:
    """The first video and audio tracks; refuses images, a missing track, and formats or codecs
    Poise does not read."""
    name = container.format.name
    if name in _IMAGE_FORMATS:
        raise MediaRejected("not_video", "the file is a still image, not a video")
    video = video_track(container)
    audio = next(iter(container.streams.audio), None)
    if video is None:
        kind = ": it is audio only" if audio is not None else ""
        raise MediaRejected("no_video", f"the file has no video track{kind}")
    if audio is None:
        raise MediaRejected("no_audio", "the video has no audio track")
    if not any(part in VIDEO_CONTAINERS for part in name.split(",")):
        raise MediaRejected(
            "unsupported_container", f"the file's format is {_format_label(name)}, which Poise does not read as video; "
            f"{supported_formats()}",
        )
    for stream in (video, audio):
        descriptor = _decoder(stream.codec_context.name) if stream.codec_context else None
        if descriptor is None or not _allowed(descriptor.canonical_name, stream.type):
            found = f"is {descriptor.long_name}" if descriptor else "has a codec Poise does not recognise"
            raise MediaRejected("unsupported_codec", f"the {stream.type} track {found}; {supported_formats()}")
    return video, audio


def _check_video_header(video: av.VideoStream, limits: GatewaySettings) -> tuple[int, int, float | None]:
    width, height = video.codec_context.width, video.codec_context.height
    if not width or not height:
        raise MediaRejected("unreadable", "the video's frame size cannot be read")
    _check_frame_size(width, height, limits)
    rate = video.average_rate or video.guessed_rate
    fps = float(rate) if rate else None
    if fps is not None and fps > limits.max_fps:
        raise MediaRejected("too_fast", f"the frame rate is {fps:.0f} fps; the limit is {limits.max_fps:.0f}")
    return width, height, fps


def _check_frame_size(width: int, height: int, limits: GatewaySettings) -> None:
    if width > limits.max_width or height > limits.max_height:
        raise MediaRejected(
            "too_big_frame", f"frames are {width}x{height}; the limit is {limits.max_width}x{limits.max_height}"
        )


def _too_long(duration: float, limits: GatewaySettings) -> MediaRejected:
    return MediaRejected(
        "too_long", f"the answer lasts {duration:.0f} s; the limit is {limits.max_duration_s:.0f} s"
    )


def _duration(container: av.container.InputContainer) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    best = None
    for stream in container.streams:
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
            best = max(best or 0.0, seconds)
    return best


def _tracks_duration(*streams: av.stream.Stream) -> float | None:
    """What the header says the tracks last (a subtitle or data track may last longer)."""
    known = [float(s.duration * s.time_base) for s in streams if s.duration and s.time_base]
    return max(known) if known else None


def _full_pass(container, video, audio, limits: GatewaySettings) -> float:
    """Read every packet; decode all audio, the first video frame and sampled key frames.

    Returns how long the packets last (first start to last end). Refuses the file as soon as
    they pass the duration limit, whatever the header said.
    """
    start = end = None
    got_video = got_audio = False
    next_key_t = 0.0
    for packet in container.demux(video, audio):
        t = None  # when the packet begins (None: it does not say)
        if packet.pts is not None and packet.time_base is not None:
            t = float(packet.pts * packet.time_base)
            ends = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            start = t if start is None else min(start, t)
            end = ends if end is None else max(end, ends)
            if end - start > limits.max_duration_s:
                raise _too_long(end - start, limits)
        if packet.stream is audio:
            got_audio |= any(True for _ in packet.decode())
            continue
        sampled_key = packet.is_keyframe and t is not None and t >= next_key_t
        if got_video and not sampled_key:
            continue
        for frame in packet.decode():
            # The bitstream, not the container header, decides the real frame size.
            _check_frame_size(frame.width, frame.height, limits)
            got_video = True
        if sampled_key:
            next_key_t = t + _KEY_FRAME_EVERY_S
    if not got_video:
        raise MediaRejected("corrupt", "no video frame could be decoded")
    if not got_audio:
        raise MediaRejected("corrupt", "no audio could be decoded")
    return 0.0 if start is None else end - start
