"""Hostile and malformed uploads: each gets the answer a careful product gives, and the gateway keeps serving.

The corpus is made here, from files encoded with PyAV and from bytes cut, flipped and forged.
Each case says what must happen: valid if unusual media (HEVC, variable frame rate, WebM, AV1,
huge metadata, a header whose duration is wrong) is accepted with its true facts; everything
else is refused with a 4xx and the specific code that says why. Nothing may answer 5xx, leave a
file behind in the interview's folder or the temporary folder, or stop the gateway serving.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from poise_common.settings import GatewaySettings
from poise_gateway.errors import MediaJobKilled, MediaRejected
from poise_gateway.probe import TRUNCATED_SLACK_RATIO, TRUNCATED_SLACK_S
from poise_gateway.sandbox import MediaSandbox
from test_upload_api import harness

SECONDS = 3.0
SIZE = (160, 120)
# Refusal codes of files that are damaged somewhere: which one depends on where the damage is.
DAMAGED = frozenset({
    "unreadable", "corrupt", "truncated", "no_video", "no_audio", "not_video", "unsupported_codec",
    "unsupported_container", "too_long", "too_big_frame", "too_fast", "decode_memory", "undecodable",
})
ACCEPTED = "accepted"


@dataclass(frozen=True)
class Case:
    """One input and what may come of it: ``accepted`` and/or the refusal codes allowed."""

    name: str
    data: bytes
    expect: frozenset[str]
    suffix: str = ".mp4"  # the name a person would give the file (for `poise score`)
    facts: dict = field(default_factory=dict)  # what an accepted answer's facts must say


# -- media made here -----------------------------------------------------------------------------
def encode(
    fmt: str,
    *,
    video: str | None = "libx264",
    audio: str | None = "aac",
    seconds: float = SECONDS,
    fps: int = 15,
    size: tuple[int, int] = SIZE,
    vfr: bool = False,
    metadata: dict[str, str] | None = None,
    options: dict[str, str] | None = None,
    audio_rate: int = 16000,
) -> bytes:
    """A moving picture and a tone, encoded into a file of format ``fmt``; its bytes."""
    with tempfile.TemporaryDirectory() as folder:  # a real file: some muxers go back to rewrite it
        path = Path(folder) / "media"
        _write(path, fmt, video, audio, seconds, fps, size, vfr, metadata or {}, options or {}, audio_rate)
        return path.read_bytes()


def _write(path, fmt, video, audio, seconds, fps, size, vfr, metadata, options, audio_rate) -> None:
    width, height = size
    rng = np.random.default_rng(7)
    with av.open(str(path), "w", format=fmt, options=options) as out:
        out.metadata.update(metadata)
        vstream = astream = None
        if video:
            vstream = out.add_stream(video, rate=fps)
            vstream.width, vstream.height = width, height
            vstream.pix_fmt = {"mjpeg": "yuvj420p", "png": "rgb24", "prores": "yuv422p10le"}.get(video, "yuv420p")
            vstream.options = {"libsvtav1": {"preset": "12"}, "libx265": {"x265-params": "log-level=error"}}.get(video, {})
        if audio:
            astream = out.add_stream(audio, rate=audio_rate, layout="mono")
        if vstream is not None:
            pts = 0
            for i in range(max(1, int(seconds * fps))):
                picture = np.full((height, width, 3), 40 + (i * 5) % 160, np.uint8)
                picture[: height // 2, : width // 3] = rng.integers(0, 255, 3, dtype=np.uint8)
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.time_base = Fraction(1, 1000) if vfr else Fraction(1, fps)
                frame.pts = pts
                # Variable frame rate: gaps of 20 ms to 250 ms between frames.
                pts += int(rng.choice([20, 40, 100, 250])) if vfr else 1
                out.mux(vstream.encode(frame))
            out.mux(vstream.encode(None))
        if astream is not None:
            context = astream.codec_context
            resampler = av.AudioResampler(format=context.format.name, layout="mono", rate=audio_rate)
            total = int(seconds * audio_rate)
            tone = (0.3 * np.sin(np.arange(total) * 2 * np.pi * 220 / audio_rate)).astype(np.float32)
            step = context.frame_size or 1024
            for start in range(0, total, step):
                chunk = np.ascontiguousarray(tone[start : start + step].reshape(1, -1))
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate, frame.pts = audio_rate, start
                for converted in resampler.resample(frame):
                    out.mux(astream.encode(converted))
            for converted in resampler.resample(None):
                out.mux(astream.encode(converted))
            out.mux(astream.encode(None))


def image(codec: str, fmt: str = "image2pipe") -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=1)
        stream.width, stream.height = SIZE
        stream.pix_fmt = {"mjpeg": "yuvj420p", "gif": "rgb8", "bmp": "bgr24"}.get(codec, "rgb24")
        frame = av.VideoFrame.from_ndarray(np.full((SIZE[1], SIZE[0], 3), 120, np.uint8), format="rgb24")
        frame = frame.reformat(format=stream.pix_fmt)
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def boxes(data: bytes, kind: bytes) -> list[int]:
    """Offsets just past the type of every MP4 box ``kind`` (a crude search, enough for our own files)."""
    found, at = [], data.find(kind)
    while at >= 0:
        found.append(at + 4)
        at = data.find(kind, at + 1)
    return found


def forged_mp4_duration(data: bytes) -> bytes:
    """Every sample of every track claims to last 2^31 ticks: hours, in a three-second file."""
    out = bytearray(data)
    for body in boxes(data, b"stts"):
        entries = struct.unpack(">I", out[body + 4 : body + 8])[0]
        for entry in range(entries):
            delta = body + 8 + entry * 8 + 4
            out[delta : delta + 4] = struct.pack(">I", 0x7FFFFFFF)
    return bytes(out)


def forged_mp4_sample_count(data: bytes) -> bytes:
    """The sample-size tables claim a billion samples: an allocation bomb for a careless parser."""
    out = bytearray(data)
    for body in boxes(data, b"stsz"):
        out[body + 8 : body + 16] = struct.pack(">II", 0, 0x3FFFFFFF)
    return bytes(out)


def forged_mkv_duration(data: bytes, seconds: float) -> bytes:
    """Matroska's Duration element (ID 0x4489, an 8-byte float of milliseconds) set to ``seconds``."""
    at = data.find(b"\x44\x89\x88")
    assert at >= 0, "no 8-byte Duration element"
    return data[: at + 3] + struct.pack(">d", seconds * 1000) + data[at + 11 :]


def forged_mkv_width(data: bytes, width: int) -> bytes:
    """Matroska's one-byte PixelWidth element (ID 0xB0) claims ``width`` (the H.264 bitstream says otherwise)."""
    at = data.find(b"\xb0\x81")
    assert at >= 0 and width < 256, "no one-byte PixelWidth element"
    return data[: at + 2] + bytes([width]) + data[at + 3 :]


def flipped(data: bytes, seed: int, count: int, region: tuple[int, int] | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    low, high = region or (0, len(data))
    for at in rng.integers(low, high, count):
        out[at] = int(rng.integers(0, 256))
    return bytes(out)


def hls_playlist(target: Path) -> bytes:
    # A playlist that would make a careless server open another file (or a URL) as the answer.
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n".encode()


def build_corpus(media_dir: Path) -> list[Case]:
    cases: list[Case] = []

    def add(name: str, data: bytes, *expect: str, suffix: str = ".mp4", **facts) -> None:
        cases.append(Case(name, data, frozenset(expect), suffix, facts))

    mp4 = encode("mp4", options={"movflags": "faststart"})
    mp4_moov_last = encode("mp4")
    mkv = encode("matroska")
    base_facts = {"width": SIZE[0], "height": SIZE[1], "duration_s": SECONDS}

    # Valid, if unusual: accepted, with the facts of what is really there.
    add("h264-aac-mp4", mp4, ACCEPTED, **base_facts, codecs={"video": "h264", "audio": "aac"})
    add("moov-at-end-mp4", mp4_moov_last, ACCEPTED, **base_facts)
    add("h264-aac-mkv", mkv, ACCEPTED, suffix=".mkv", **base_facts)
    add("hevc-aac-mp4", encode("mp4", video="libx265"), ACCEPTED, **base_facts, codecs={"video": "hevc", "audio": "aac"})
    add("hevc-real-recording", (media_dir / "face_noface.mov").read_bytes(), ACCEPTED, suffix=".mov",
        width=960, codecs={"video": "hevc", "audio": "aac"})
    add("variable-frame-rate", encode("matroska", vfr=True, seconds=6.0), ACCEPTED, suffix=".mkv",
        width=SIZE[0], height=SIZE[1])
    add("vp9-opus-webm", encode("webm", video="libvpx-vp9", audio="libopus", audio_rate=48000), ACCEPTED,
        suffix=".webm", **base_facts, codecs={"video": "vp9", "audio": "opus"})
    add("vp8-opus-webm", encode("webm", video="libvpx", audio="libopus", audio_rate=48000), ACCEPTED,
        suffix=".webm", **base_facts)
    add("av1-opus-mkv", encode("matroska", video="libsvtav1", audio="libopus", audio_rate=48000, size=(192, 128)),
        ACCEPTED, suffix=".mkv", width=192, height=128)
    add("mpeg4-mp3-avi", encode("avi", video="mpeg4", audio="libmp3lame", audio_rate=22050), ACCEPTED,
        suffix=".avi", **base_facts)
    add("mjpeg-pcm-avi", encode("avi", video="mjpeg", audio="pcm_s16le"), ACCEPTED, suffix=".avi", **base_facts)
    add("h264-aac-mpegts", encode("mpegts"), ACCEPTED, suffix=".ts", width=SIZE[0], height=SIZE[1])
    add("h264-pcm-mov", encode("mov", audio="pcm_s16le"), ACCEPTED, suffix=".mov", **base_facts)
    add("huge-metadata", encode("mp4", metadata={f"tag{i}": "x" * 2000 for i in range(300)}), ACCEPTED, **base_facts)
    add("one-frame", encode("mp4", seconds=0.5, fps=2), ACCEPTED, width=SIZE[0])
    add("mkv-duration-says-0.1s", forged_mkv_duration(mkv, 0.1), ACCEPTED, suffix=".mkv", **base_facts)
    add("mkv-width-says-250", forged_mkv_width(mkv, 250), ACCEPTED, suffix=".mkv", **base_facts)
    add("large-frames-at-the-limit", encode("mp4", size=(4096, 2304), seconds=1.0, fps=5), ACCEPTED,
        width=4096, height=2304)

    # Valid media that is not an interview answer.
    add("empty", b"", "empty")
    add("png", image("png"), "not_video", suffix=".png")
    add("jpeg", image("mjpeg"), "not_video", suffix=".jpg")
    add("gif", image("gif", "gif"), "not_video", suffix=".gif")
    add("bmp", image("bmp"), "not_video", suffix=".bmp")
    add("audio-only-m4a", encode("mp4", video=None), "no_video", suffix=".m4a")
    add("audio-only-wav", encode("wav", video=None, audio="pcm_s16le"), "no_video", suffix=".wav")
    add("audio-only-flac", (media_dir / "jfk.flac").read_bytes(), "no_video", suffix=".flac")
    add("audio-only-mp3", encode("mp3", video=None, audio="libmp3lame", audio_rate=22050), "no_video", suffix=".mp3")
    add("audio-only-ogg", encode("ogg", video=None, audio="libopus", audio_rate=48000), "no_video", suffix=".ogg")
    add("audio-only-mka", encode("matroska", video=None), "no_video", suffix=".mka")
    add("video-only-mp4", encode("mp4", audio=None), "no_audio")
    add("video-only-webm", encode("webm", video="libvpx", audio=None), "no_audio", suffix=".webm")
    add("video-only-avi", encode("avi", video="mpeg4", audio=None), "no_audio", suffix=".avi")
    add("video-only-mkv", encode("matroska", audio=None), "no_audio", suffix=".mkv")

    # Containers and codecs Poise does not read: named, with what is supported.
    add("flv", encode("flv"), "unsupported_container", suffix=".flv")
    add("asf-wmv", encode("asf", video="wmv2", audio="libmp3lame", audio_rate=22050), "unsupported_container", suffix=".wmv")
    add("nut", encode("nut"), "unsupported_container", suffix=".nut")
    add("ogg-with-video", encode("ogg", video="libvpx", audio="libopus", audio_rate=48000), "unsupported_container",
        suffix=".ogv")
    add("mp2-audio-in-mpegts", encode("mpegts", video="mpeg2video", audio="mp2", audio_rate=44100),
        "unsupported_codec", suffix=".ts")
    add("ffv1-video-in-mkv", encode("matroska", video="ffv1"), "unsupported_codec", suffix=".mkv")
    add("png-video-in-mov", encode("mov", video="png"), "unsupported_codec", suffix=".mov")
    add("prores-in-mov", encode("mov", video="prores"), "unsupported_codec", suffix=".mov")
    add("rawvideo-in-avi", encode("avi", video="rawvideo", seconds=1.0), "unsupported_codec", suffix=".avi")
    add("h263-in-3gp", encode("3gp", video="h263", size=(176, 144), audio_rate=8000), "unsupported_codec", suffix=".3gp")

    # Headers that lie or ask too much.
    add("mp4-duration-says-hours", forged_mp4_duration(mp4), "too_long")
    add("mkv-duration-says-10h", forged_mkv_duration(mkv, 36000.0), "too_long", suffix=".mkv")
    add("4608-wide", encode("mp4", size=(4608, 64), seconds=1.0), "too_big_frame")
    add("4608-tall", encode("mp4", size=(64, 4608), seconds=1.0), "too_big_frame")
    add("240-fps", encode("mp4", fps=240, seconds=1.0), "too_fast")
    # Either the parser sees through the claim, or its allocation fails under the memory limit.
    add("mp4-sample-count-bomb", forged_mp4_sample_count(mp4), "corrupt", "unreadable", "decode_memory")

    # Not media at all. FFmpeg recognises some (subtitles, playlists, SVG): they are named and refused.
    not_media = {
        "text": (b"Dear hiring manager,\n" * 50, "unreadable", ".txt"),
        "html": (b"<!DOCTYPE html><html><body><video src='a.mp4'></video></body></html>", "unreadable", ".html"),
        "json": (json.dumps({"video": "a.mp4", "data": list(range(500))}).encode(), "unreadable", ".json"),
        "csv": (b"name,score\n" + b"a,1\n" * 200, "unreadable", ".csv"),
        "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 20, "unreadable", ".pdf"),
        "elf": (b"\x7fELF\x02\x01\x01" + bytes(2000), "unreadable", ".mp4"),
        "windows-exe": (b"MZ\x90\x00" + bytes(2000), "unreadable", ".mp4"),
        "shell-script": (b"#!/bin/sh\nrm -rf /\n", "unreadable", ".mp4"),
        "gzip": (b"\x1f\x8b\x08\x00" + os.urandom(3000), "unreadable", ".gz"),
        "zip-of-a-video": (_zipped(mp4), "unreadable", ".zip"),
        "svg": (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>",
                "unreadable", ".svg"),
        "webvtt": (b"WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nHello\n", "unsupported_container", ".vtt"),
        "srt": (b"1\n00:00:00,000 --> 00:00:02,000\nHello\n\n2\n00:00:02,000 --> 00:00:04,000\nAgain\n",
                "unsupported_container", ".srt"),
        "ffconcat": (b"ffconcat version 1.0\nfile '/etc/passwd'\n", "unsupported_container", ".ffconcat"),
        "hls-playlist": (hls_playlist(media_dir / "single_face.mp4"), "unreadable", ".m3u8"),
        "sdp": (b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 5004 RTP/AVP 96\n",
                "unsupported_container", ".sdp"),
    }
    for name, (data, code, suffix) in not_media.items():
        add(name, data, code, suffix=suffix)

    # Random bytes of many sizes: never a video.
    rng = np.random.default_rng(2024)
    for size in (1, 2, 3, 4, 7, 8, 12, 16, 31, 64, 100, 188, 255, 512, 1000, 4096, 10_000, 65_536, 250_000, 1_000_000):
        add(f"random-{size}", rng.integers(0, 256, size, dtype=np.uint8).tobytes(), *(DAMAGED - {ACCEPTED}))
    # Real headers followed by garbage.
    for name, data in (("mp4", mp4), ("mkv", mkv)):
        for keep in (16, 64, 512):
            add(f"{name}-head-{keep}-then-noise", data[:keep] + rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes(),
                *DAMAGED)

    # Cut short: refused, or (when nearly all of it is there) accepted with what is there.
    for source, data, cuts in (("mp4", mp4, 30), ("mp4-moov-at-end", mp4_moov_last, 12), ("mkv", mkv, 20)):
        for k in range(1, cuts):
            add(f"{source}-cut-at-{k}/{cuts}", data[: len(data) * k // cuts], ACCEPTED, *DAMAGED,
                suffix=".mkv" if source == "mkv" else ".mp4", at_least_s=_nearly(SECONDS))
    # Damaged bytes: anywhere, and in the headers where the parsers live.
    for seed in range(40):
        add(f"mp4-flips-{seed}", flipped(mp4, seed, (1, 4, 16, 64)[seed % 4]), ACCEPTED, *DAMAGED)
    header_end = mp4.find(b"mdat")
    for seed in range(20):
        add(f"mp4-header-flips-{seed}", flipped(mp4, 100 + seed, 1 + seed % 3, (0, header_end)), ACCEPTED, *DAMAGED)
    for seed in range(20):
        add(f"mkv-flips-{seed}", flipped(mkv, 200 + seed, (1, 8)[seed % 2]), ACCEPTED, *DAMAGED, suffix=".mkv")
    return cases


def _zipped(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("answer.mp4", data)
    return buffer.getvalue()


def _nearly(seconds: float) -> float:
    """The shortest an accepted cut of a ``seconds`` file may be: the probe's own tolerance."""
    return seconds - max(TRUNCATED_SLACK_S, TRUNCATED_SLACK_RATIO * seconds)


@pytest.fixture(scope="module")
def corpus(media_dir) -> list[Case]:
    return build_corpus(media_dir)


@pytest.fixture()
def private_tmp(tmp_path, monkeypatch) -> Path:
    """A temporary folder of this test alone (children inherit it), so leaks can be counted."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# -- the REST upload API ---------------------------------------------------------------------------
def check_accepted(case: Case, facts: dict) -> None:
    assert facts["codecs"]["video"] and facts["codecs"]["audio"], case.name
    limits = GatewaySettings()
    assert 0 < facts["width"] <= limits.max_width and 0 < facts["height"] <= limits.max_height, case.name
    assert 0 < facts["duration_s"] <= limits.max_duration_s, case.name
    expected = case.facts
    for key in ("width", "height", "codecs"):
        if key in expected:
            assert facts[key] == expected[key], (case.name, key, facts[key])
    if "duration_s" in expected:
        assert facts["duration_s"] == pytest.approx(expected["duration_s"], abs=0.25), case.name
    if "at_least_s" in expected:  # an accepted cut holds nearly all of the answer
        assert facts["duration_s"] >= expected["at_least_s"], (case.name, facts["duration_s"])


def test_every_hostile_upload_gets_its_answer_and_the_gateway_keeps_serving(
    tmp_path, media_dir, corpus, private_tmp
):
    async def scenario():
        async with harness(tmp_path) as h:
            interview_id = await h.create(questions=[{"question_id": "q1", "text": "Why this role?"}])
            folder = h.desk.root / interview_id
            outcomes = []
            for case in corpus:
                before = h.files(interview_id)
                response = await h.put(interview_id, "q1", case.data)
                after = h.files(interview_id)
                outcomes.append((case, response.status_code, response.json(), before, after))
            still = await h.put(interview_id, "q1", (media_dir / "single_face.mp4").read_bytes())
            done = await h.client.post(f"/v1/interviews/{interview_id}/complete")
            return outcomes, still, done, folder, sorted(p.name for p in h.desk.root.iterdir())

    outcomes, still, done, folder, interviews = asyncio.run(scenario())
    tally = Counter()
    for case, status, body, before, after in outcomes:
        assert status < 500, (case.name, status, body)
        if status == 200:
            assert ACCEPTED in case.expect, (case.name, body)
            check_accepted(case, body)
            assert len([f for f in after if f.endswith(".media")]) == 1, case.name  # it replaced the previous one
            tally[ACCEPTED] += 1
        else:
            error = body["error"]
            assert status == 422 and error["code"] in case.expect, (case.name, status, error)
            assert 10 <= len(error["message"]) <= 600, (case.name, error)
            assert after == before, (case.name, before, after)  # nothing half-written stays
            tally[error["code"]] += 1
    print(f"\nhostile corpus: {len(outcomes)} inputs tried through the upload API: {dict(sorted(tally.items()))}")
    assert len(outcomes) >= 200
    # The process still serves: a real answer is accepted and published, and nothing else is left behind.
    assert still.status_code == 200 and done.status_code == 202
    left = sorted(p.name for p in folder.iterdir())
    assert [name for name in left if not name.endswith(".media")] == ["manifest.json"]
    assert len(left) <= 2  # at most the one answer the manifest names, where media is kept for playback
    assert interviews == [folder.name]
    assert list(private_tmp.iterdir()) == []


def test_what_each_refusal_says(tmp_path, corpus):
    """The messages name what was found and what is supported (the codes alone are not enough for people)."""
    by_name = {case.name: case for case in corpus}
    limits = GatewaySettings()
    sandbox = MediaSandbox(warm=0)
    messages = {}
    try:
        for name in ("flv", "prores-in-mov", "mp2-audio-in-mpegts", "audio-only-wav", "4608-wide",
                     "mp4-duration-says-hours"):
            path = tmp_path / f"{name}{by_name[name].suffix}"
            path.write_bytes(by_name[name].data)
            with pytest.raises(MediaRejected) as refused:
                sandbox.probe(path, limits)
            messages[name] = refused.value.message
    finally:
        sandbox.close()
    assert messages["flv"].startswith("the file's format is FLV") and "supported: MP4/MOV, Matroska/WebM" in messages["flv"]
    assert "ProRes" in messages["prores-in-mov"] and "H.264" in messages["prores-in-mov"]
    assert "MP2" in messages["mp2-audio-in-mpegts"] and "AAC" in messages["mp2-audio-in-mpegts"]
    assert "audio only" in messages["audio-only-wav"]
    assert messages["4608-wide"] == "frames are 4608x64; the limit is 4096x4096"
    assert "the limit is 1200 s" in messages["mp4-duration-says-hours"]


# -- the sandbox's own failures --------------------------------------------------------------------
@pytest.fixture(params=["forked", "started"])
def stand_in(request):
    """Makes sandboxes whose children run ``code`` instead of the real job: how it copes with
    misbehaviour, with children forked by the fork server and with children started one by one."""
    made: list[MediaSandbox] = []

    def make(code: str) -> MediaSandbox:
        made.append(MediaSandbox(warm=0, fork=request.param == "forked", stand_in=code))
        assert (made[-1].fork_server is not None) == (request.param == "forked")
        return made[-1]

    yield make
    for sandbox in made:
        sandbox.close()


# A child that writes one message with ``{0}`` as its header.
_SAYS = (
    "import json, struct, sys; h = json.dumps({0}).encode(); sys.stdout.buffer.write(struct.pack('>II', len(h), 0) + h)"
)


@pytest.mark.parametrize(
    ("code", "limits", "expected"),
    [
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", {}, "undecodable"),
        ("import os; os.abort()", {}, "undecodable"),
        ("import sys; sys.exit(3)", {}, "undecodable"),
        ("import time; time.sleep(30)", {"media_timeout_s": 0.5}, "decode_timeout"),
        ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (1, 3))\nwhile True: pass", {}, "decode_timeout"),
        # A child that a file took over cannot make the parent believe what it says.
        ("import sys; sys.stdout.buffer.write(b'\\xff' * 64)", {}, "undecodable"),
        (_SAYS.format({"kind": "info", "info": {"size_bytes": "many"}}), {}, "undecodable"),
        (_SAYS.format({"kind": "rejected", "code": "<script>", "message": "x"}), {}, "undecodable"),
        (_SAYS.format({"kind": "exec", "code": "import os"}), {}, "undecodable"),
    ],
)
def test_a_child_that_dies_hangs_or_lies_is_a_clear_refusal(tmp_path, media_dir, stand_in, code, limits, expected):
    sandbox = stand_in(code)
    with pytest.raises(MediaRejected) as refused:
        sandbox.probe(media_dir / "single_face.mp4", GatewaySettings(**limits))
    assert refused.value.code == expected and refused.value.message


def test_a_hung_child_is_killed(tmp_path, media_dir, stand_in):
    pid_file = tmp_path / "pid"
    sandbox = stand_in(f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)")
    with pytest.raises(MediaRejected) as refused:
        sandbox.probe(media_dir / "single_face.mp4", GatewaySettings(media_timeout_s=1.0))
    assert refused.value.code == "decode_timeout"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


@pytest.mark.parametrize("sent", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_child_stopped_from_outside_is_the_servers_failure_not_the_files(tmp_path, media_dir, stand_in, sent):
    # What the OOM killer or an operator does to a child reading a valid file: a retry may succeed.
    pid_file = tmp_path / "pid"
    sandbox = stand_in(f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)")
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(sandbox.probe, media_dir / "single_face.mp4", GatewaySettings(media_timeout_s=30.0))
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the stand-in never started"
            time.sleep(0.05)
        os.kill(int(pid_file.read_text()), sent)
        with pytest.raises(MediaJobKilled) as stopped:
            job.result()
    assert stopped.value.code == "decode_interrupted" and stopped.value.status == 503
    assert "not because of the file" in stopped.value.message


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "started"])
def test_real_limits_refuse_and_the_sandbox_serves_on(media_dir, fork):
    sandbox = MediaSandbox(warm=1, fork=fork)
    try:
        with pytest.raises(MediaRejected) as memory:
            sandbox.probe(media_dir / "pexels_face_20s.mp4", GatewaySettings(media_memory_mb=100))
        with pytest.raises(MediaRejected) as slow:
            sandbox.probe(media_dir / "pexels_face_20s.mp4", GatewaySettings(media_timeout_s=0.01))
        info = sandbox.probe(media_dir / "pexels_face_20s.mp4", GatewaySettings())
    finally:
        sandbox.close()
    assert memory.value.code == "decode_memory" and "100 MiB" in memory.value.message
    assert slow.value.code == "decode_timeout"
    assert info.width == 640 and info.duration_s == pytest.approx(19.7, abs=0.1)


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "started"])
def test_a_memory_limit_below_the_decoders_own_size_is_refused_and_named_for_the_operator(media_dir, fork, caplog):
    # 100 MiB is below what a decoding process holds before it reads anything (PyAV, OpenCV and
    # numpy mapped: about 380 MiB of address space): refused before the file is opened, as a
    # memory refusal (not as a damaged file), and the log says the setting is the cause.
    sandbox = MediaSandbox(warm=1, fork=fork)
    try:
        with caplog.at_level("WARNING", logger="poise_gateway.sandbox"), pytest.raises(MediaRejected) as memory:
            sandbox.probe(media_dir / "pexels_face_20s.mp4", GatewaySettings(media_memory_mb=100))
    finally:
        sandbox.close()
    assert memory.value.code == "decode_memory" and "100 MiB" in memory.value.message
    [record] = [r for r in caplog.records if "below a decoding process's own size" in r.getMessage()]
    assert record.media_memory_mb == 100 and record.own_mb > 100
    assert not [r for r in caplog.records if r.getMessage() == "media job died"]


def test_the_cpu_limit_a_child_sets_itself_stops_a_runaway(media_dir, stand_in):
    # The child's own limiting, then a loop no file should cause: the kernel ends it.
    sandbox = stand_in(
        "from poise_gateway.sandbox import _limit_self\n_limit_self(1 << 30, 0.5)\nwhile True: pass"
    )
    with pytest.raises(MediaRejected) as cpu:
        sandbox.probe(media_dir / "single_face.mp4", GatewaySettings(media_cpu_s=0.5))
    assert cpu.value.code == "decode_timeout" and "CPU seconds" in cpu.value.message


def test_warm_up_starts_the_children_that_the_first_jobs_then_use(media_dir):
    sandbox = MediaSandbox(warm=2, fork=False)
    try:
        sandbox.warm_up()
        warmed = {child.pid for child in sandbox._idle}
        assert len(warmed) == 2 and all(child.poll() is None for child in sandbox._idle)
        sandbox.warm_up()  # already warm: starts nothing more
        assert {child.pid for child in sandbox._idle} == warmed
        info = sandbox.probe(media_dir / "pexels_face_20s.mp4", GatewaySettings())
        # The probe ran in one of the warmed children (gone now); a fresh one took its place.
        after = {child.pid for child in sandbox._idle}
        assert len(after) == 2 and len(after & warmed) == 1
    finally:
        sandbox.close()
    assert info.width == 640


def test_children_run_as_much_nicer_as_asked(media_dir):
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert base + 5 <= 19, f"the tests run at niceness {base}: no room to be nicer"
    sandbox, plain = MediaSandbox(warm=1, nice=5, fork=False), MediaSandbox(warm=1, fork=False)
    try:
        sandbox.warm_up()
        plain.warm_up()
        assert os.getpriority(os.PRIO_PROCESS, sandbox._idle[0].pid) == base + 5
        assert os.getpriority(os.PRIO_PROCESS, plain._idle[0].pid) == base
        assert sandbox.probe(media_dir / "pexels_face_20s.mp4", GatewaySettings()).width == 640
    finally:
        sandbox.close()
        plain.close()


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "started"])
@pytest.mark.parametrize(("name", "duration_s", "at_least"), [
    ("face_noface.mov", 6.4, 25),  # 960x540 HEVC, scaled to 640 wide
    ("single_face.mp4", 2.4, 10),  # 640x360 H.264, kept at its size (decoded straight to BGR)
])
def test_sandboxed_decode_gives_what_decoding_in_process_gives(media_dir, fork, name, duration_s, at_least):
    from poise_gateway.decode import encode_jpeg, iter_audio, iter_frames

    limits = GatewaySettings(sample_fps=5)
    sandbox = MediaSandbox(warm=0, fork=fork)
    try:
        frames = list(sandbox.frames(media_dir / name, limits, duration_s))
        audio = list(sandbox.audio(media_dir / name, limits, duration_s))
    finally:
        sandbox.close()
    direct = list(iter_frames(media_dir / name, 5, limits.frame_width))
    assert [f.t_s for f in frames] == [t for t, _ in direct] and len(frames) >= at_least
    # The child's JPEGs are byte for byte what encoding the in-process frames gives.
    assert [f.jpeg for f in frames] == [encode_jpeg(rgb, limits.jpeg_quality) for _, rgb in direct]
    assert all((f.width, f.height) == (rgb.shape[1], rgb.shape[0]) for f, (_, rgb) in zip(frames, direct))
    assert audio == list(iter_audio(media_dir / name, limits.audio_chunk_s))


# -- `poise score` ------------------------------------------------------------------------------------
CLI_CASES = (
    "empty", "text", "html", "pdf", "zip-of-a-video", "hls-playlist", "ffconcat", "random-4096", "png", "gif",
    "audio-only-wav", "audio-only-mp3", "video-only-mp4", "flv", "prores-in-mov", "mp2-audio-in-mpegts",
    "mp4-duration-says-hours", "4608-wide", "240-fps", "mp4-cut-at-3/30", "mkv-duration-says-10h",
)


def test_poise_score_refuses_hostile_files_with_exit_2_and_writes_nothing(tmp_path, corpus):
    by_name = {case.name: case for case in corpus}
    home = tmp_path / "home"
    home.mkdir()
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = {**os.environ, "POISE_HOME": str(home), "TMPDIR": str(private_tmp)}

    def score(name: str) -> tuple[str, subprocess.CompletedProcess]:
        case = by_name[name]
        path = tmp_path / "inputs" / name.replace("/", "-") / f"answer{case.suffix}"
        path.parent.mkdir(parents=True)
        path.write_bytes(case.data)
        result = subprocess.run([sys.executable, "-m", "poise", "score", str(path)], capture_output=True,
                                text=True, env=env, timeout=300)
        return name, result

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(score, CLI_CASES))
    print(f"\nhostile corpus: {len(results)} inputs tried through `poise score`")
    for name, result in results:
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (name, result.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith("poise: error: answer"), (name, result.stderr)
        assert result.stdout == ""
    for database in home.rglob("*.db"):  # refused before anything is opened: no rows anywhere
        with sqlite3.connect(database) as db:
            tables = [row[0] for row in db.execute("select name from sqlite_master where type = 'table'")]
            assert all(db.execute(f'select count(*) from "{t}"').fetchone()[0] == 0 for t in tables), database
    assert list(private_tmp.iterdir()) == []
