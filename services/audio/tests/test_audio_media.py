"""The audio analysers on real recordings (../shared/media, see its SOURCES.md)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from poise_common.settings import AudioSettings
from poise_common.signals import TranscriptSegment

from poise_audio.analysis import analyse_audio
from poise_audio.asr import SpeechRecognizer, create_recognizer
from poise_audio.vad import detect_speech
from poise_devstack.speech_checks import JFK_TEXT, load_audio_16k, normalise, word_error_rate

pytestmark = pytest.mark.media

SR = 16000
def rttm_first_onset(path: Path) -> float:
    """Earliest speech start in an RTTM file (field 4 is the onset in seconds)."""
    onsets = [float(line.split()[3]) for line in path.read_text().splitlines() if line.startswith("SPEAKER")]
    assert onsets, "reference timeline is empty"
    return min(onsets)


@pytest.fixture()
def offline(monkeypatch) -> None:
    """Any attempt to open a network connection (a model hub lookup) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def settings() -> AudioSettings:
    return AudioSettings(asr_threads=2, asr_compute_type="int8")


@pytest.fixture(scope="module")
def recognizer(settings) -> Iterator[SpeechRecognizer]:
    with create_recognizer(settings) as rec:
        yield rec


def _words(transcript: list[TranscriptSegment]):
    return [w for segment in transcript for w in segment.words]


def test_word_error_rate_helper():
    assert word_error_rate("Ask not, what.", "ask not what") == 0.0
    assert word_error_rate("ask not what", "ask what") == pytest.approx(1 / 3)
    assert word_error_rate("ask not what", "ask knot what you") == pytest.approx(2 / 3)


def test_jfk_is_transcribed_with_ordered_word_times(media_dir, recognizer, offline):
    audio = load_audio_16k(media_dir / "jfk.flac")
    transcript = recognizer.transcribe(audio, question="What does public service mean to you?")
    words = _words(transcript)
    hypothesis = " ".join(segment.text for segment in transcript)

    assert word_error_rate(JFK_TEXT, hypothesis) <= 0.10
    assert len(words) >= 20
    starts = [w.start_s for w in words]
    assert starts == sorted(starts)
    assert all(w.start_s <= w.end_s for w in words)
    assert all(0.0 <= w.start_s and w.end_s <= audio.size / SR for w in words)
    for segment in transcript:
        assert segment.start_s == segment.words[0].start_s
        assert segment.end_s == segment.words[-1].end_s
    # Filler prompting must not invent fillers in a fluent speech.
    assert not {"um", "umm", "uh", "hmm"} & set(normalise(hypothesis))


def test_first_speech_onset_matches_the_reference_timeline(media_dir, settings):
    audio = load_audio_16k(media_dir / "two_speakers.wav")
    reference = rttm_first_onset(media_dir / "two_speakers.rttm")

    segments = detect_speech(audio, SR, settings.vad_aggressiveness)
    signals = analyse_audio(audio, SR, [], settings)

    assert segments[0].start_s == pytest.approx(reference, abs=0.3)
    assert signals.first_speech_onset_s == segments[0].start_s
    assert signals.speech_rate_wpm is None, "no transcript means no measurable pace"
    assert signals.pitch_mean_hz is not None


def test_lecture_speech_rate_and_prosody(media_dir, recognizer, settings):
    audio = load_audio_16k(media_dir / "lecture_60s.wav")
    transcript = recognizer.transcribe(audio)
    signals = analyse_audio(audio, SR, transcript, settings)

    assert 100 <= signals.speech_rate_wpm <= 220
    assert 0.6 < signals.speech_ratio < 1.0
    assert signals.pause_count >= 1 and signals.mean_pause_s >= 0.25
    assert 0.0 < signals.pause_ratio < 0.5
    assert 80 < signals.pitch_mean_hz < 300
    assert 0.5 < signals.pitch_variation_st < 8
    assert -60 < signals.loudness_db < 0
    assert signals.segments and signals.segments[0].start_s < 1.0


def test_inserted_silence_is_one_long_pause_episode(media_dir, settings):
    audio = load_audio_16k(media_dir / "jfk.flac")
    cut = int(8.0 * SR)  # between "... for you," and "ask what you can do"
    stretched = np.concatenate([audio[:cut], np.zeros(3 * SR, dtype=np.float32), audio[cut:]])

    before = analyse_audio(audio, SR, [], settings)
    after = analyse_audio(stretched, SR, [], settings)

    assert before.long_pause_count == 0
    assert after.long_pause_count == 1
    [episode] = after.episodes
    assert episode.behaviour == "long_pause"
    assert 7.0 < episode.start_s <= 8.0
    assert 3.0 <= episode.end_s - episode.start_s < 3.8
    assert after.pause_ratio > before.pause_ratio


def test_silent_soundtrack_is_not_measurable(media_dir, recognizer, settings):
    audio = load_audio_16k(media_dir / "pexels_face_20s.mp4")  # its AAC track is all zeros
    transcript = recognizer.transcribe(audio)
    signals = analyse_audio(audio, SR, transcript, settings)

    assert audio.size / SR == pytest.approx(19.7, abs=0.5)
    assert transcript == []
    assert signals.speech_ratio == 0.0
    assert signals.speech_rate_wpm is None and signals.pitch_mean_hz is None


def test_batched_decoding_agrees_with_one_window_at_a_time(media_dir, offline):
    """The GPU path (windows decoded together) transcribes a minute of lecture like the CPU path."""
    from poise_common.inference.speech import WhisperRunner

    audio = load_audio_16k(media_dir / "lecture_60s.wav")
    one_by_one = WhisperRunner().transcribe(audio)
    batched = WhisperRunner(batch_size=8).transcribe(audio)
    reference = " ".join(s.text for s in one_by_one)

    assert len(batched) >= 2  # cut into windows at its pauses
    assert word_error_rate(reference, " ".join(s.text for s in batched)) <= 0.08  # 0.026 seen
    words = [w for s in batched for w in s.words]
    assert len(words) >= 100
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert all(0.0 <= w.start <= w.end <= audio.size / SR + 0.5 for w in words)
