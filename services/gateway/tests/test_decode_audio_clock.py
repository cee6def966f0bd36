"""Audio on the video's clock: files whose audio track starts later or earlier than the video.

Each shifted file is a real recording copied packet for packet with one track's times moved, so
the sound is the recording's own and only where it sits changes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np
import pytest
from poise_audio.vad import EDGE_PAD_S, FRAME_S, detect_speech

from poise_common.bus.memory import MemoryBus
from poise_common.messages import AnswerMediaDone, AudioChunk, AudioEnd, Envelope, Question, Topics
from poise_common.settings import GatewaySettings
from poise_gateway.decode import SAMPLE_RATE, iter_audio
from poise_gateway.service import AnswerUpload, Gateway

# Whole VAD frames (30 ms), so that a shifted file's frames hold the same samples as the original's.
SHIFT_S = 1.5
SPEECH = "talking_head_2.mp4"  # real speech from 0.18 s, a pause near 2.4 s


def shifted_copy(source: Path, target: Path, *, audio_s: float = 0.0, video_s: float = 0.0) -> Path:
    """``source`` remuxed with its audio ``audio_s`` and its video ``video_s`` seconds later."""
    with av.open(str(source)) as given, av.open(str(target), "w") as out:
        video_in, audio_in = given.streams.video[0], given.streams.audio[0]
        tracks = {
            video_in: (out.add_stream_from_template(video_in), video_s),
            audio_in: (out.add_stream_from_template(audio_in), audio_s),
        }
        for packet in given.demux(video_in, audio_in):
            if packet.dts is None:  # the demuxer's empty packet at the end
                continue
            if packet.stream is audio_in and packet.pts < 0:
                # The encoder's priming, which the source's edit list hides: a copy would play it.
                continue
            track, seconds = tracks[packet.stream]
            moved = int(round(seconds / packet.time_base))
            packet.pts += moved
            packet.dts += moved
            packet.stream = track
            out.mux(packet)
    return target


def track_starts(path: Path) -> tuple[float, float]:
    """(video start, audio start) in seconds, as PyAV reports them."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        return tuple(float(s.start_time * s.time_base) for s in (video, audio))


def decoded(path: Path, chunk_s: float = 1.0) -> np.ndarray:
    pcm = b"".join(chunk for _, chunk in iter_audio(path, chunk_s))
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768


def speech_times(samples: np.ndarray) -> list[float]:
    """Where the audio service finds speech in ``samples``: start, end, start, end, ..."""
    return [t for s in detect_speech(samples, SAMPLE_RATE) for t in (s.start_s, s.end_s)]


def test_late_audio_moves_every_speech_segment_by_its_offset(media_dir, tmp_path):
    late = shifted_copy(media_dir / SPEECH, tmp_path / "late.mp4", audio_s=SHIFT_S)
    video_start, audio_start = track_starts(late)
    offset = audio_start - video_start
    assert offset == pytest.approx(SHIFT_S, abs=1e-3)
    original = speech_times(decoded(media_dir / SPEECH))
    moved = speech_times(decoded(late))
    assert len(original) >= 4 and original[0] < 0.5
    assert moved == pytest.approx([t + offset for t in original], abs=1e-3)
    # Nothing is heard before the audio track begins.
    assert not decoded(late)[: int(offset * SAMPLE_RATE)].any()


def test_audio_before_the_video_is_cut_at_the_first_frame(media_dir, tmp_path):
    early = shifted_copy(media_dir / SPEECH, tmp_path / "early.mp4", video_s=SHIFT_S / 5)
    video_start, audio_start = track_starts(early)
    offset = audio_start - video_start
    assert offset == pytest.approx(-SHIFT_S / 5, abs=1e-3)
    original_samples = decoded(media_dir / SPEECH)
    samples = decoded(early)
    assert samples.size == original_samples.size + round(offset * SAMPLE_RATE)
    # Sample for sample the recording's own, less what played before the first frame: every
    # time measured from them is the original's moved by the offset. (Speech segments are not
    # compared: webrtcvad adapts to the sound it starts on, here the middle of a word.)
    np.testing.assert_array_equal(samples, original_samples[-samples.size :])


def test_recording_with_late_audio_speaks_when_its_audio_starts(media_dir):
    path = media_dir / "face_noface.mov"
    video_start, audio_start = track_starts(path)
    offset = audio_start - video_start
    assert offset > 2.0  # the recording's own audio track starts at 2.43 s
    samples = decoded(path)
    first_sound = int(np.flatnonzero(samples)[0])
    assert first_sound / SAMPLE_RATE == pytest.approx(offset, abs=1 / SAMPLE_RATE)
    # It speaks from the audio's first moment: the segment starts there, less the VAD's edge pad.
    onset = speech_times(samples)[0]
    assert offset - EDGE_PAD_S - FRAME_S <= onset <= offset
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        audio_end = audio_start + float(audio.duration * audio.time_base)
    assert samples.size / SAMPLE_RATE == pytest.approx(audio_end - video_start, abs=0.05)


def test_audio_only_file_starts_at_its_own_zero(media_dir):
    samples = decoded(media_dir / "jfk.flac")
    assert samples.size / SAMPLE_RATE == pytest.approx(11.0, abs=0.01)
    assert samples[: SAMPLE_RATE // 10].any()  # no silence put in front


@pytest.mark.parametrize("chunk_s", [1.0, 0.37])
def test_chunk_times_follow_the_samples_before_them(media_dir, chunk_s):
    chunks = list(iter_audio(media_dir / "face_noface.mov", chunk_s))
    size = round(chunk_s * SAMPLE_RATE)
    assert all(len(pcm) == 2 * size for _, pcm in chunks[:-1]) and 0 < len(chunks[-1][1]) <= 2 * size
    assert [t for t, _ in chunks] == [i * size / SAMPLE_RATE for i in range(len(chunks))]


def test_chunk_shorter_than_a_sample_is_refused(media_dir):
    with pytest.raises(ValueError, match="at least one sample"):
        next(iter_audio(media_dir / "face_noface.mov", 0.00001))


def test_gateway_announces_as_many_chunks_as_it_publishes_for_late_audio(media_dir, tmp_path):
    """The bus publishing path of both deployments (decoding in the sandbox's child)."""
    late = shifted_copy(media_dir / SPEECH, tmp_path / "late.mp4", audio_s=SHIFT_S)

    async def published() -> tuple[list[Envelope], AnswerMediaDone]:
        bus = MemoryBus(partitions=2, capacity=10_000)
        await bus.start()
        gateway = Gateway(bus, GatewaySettings(sample_fps=5))
        upload = AnswerUpload(Question(question_id="q1", text="Why?"), late)
        [info] = gateway.validate([upload])
        await gateway.publish_answer("iv1", "t1", 0, upload, info)
        audio = [Envelope.from_bytes(v) for v in await bus.read_all(Topics.MEDIA_AUDIO)]
        [done] = [Envelope.from_bytes(v).payload for v in await bus.read_all(Topics.MEDIA_CONTROL)]
        await bus.stop()
        return audio, done

    audio, done = asyncio.run(published())
    chunks = [e.payload for e in audio if isinstance(e.payload, AudioChunk)]
    assert isinstance(audio[-1].payload, AudioEnd) and audio[-1].payload.count == len(chunks) == done.audio_count
    pcm = b"".join(c.pcm for c in chunks)
    assert pcm == b"".join(chunk for _, chunk in iter_audio(late, GatewaySettings().audio_chunk_s))
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    original = speech_times(decoded(media_dir / SPEECH))
    assert speech_times(samples)[0] == pytest.approx(original[0] + SHIFT_S, abs=1e-3)
