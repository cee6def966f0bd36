"""Unit tests of the audio analysers on synthetic signals (no recordings, no speech model)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from poise_common.settings import AudioSettings
from poise_common.signals import SpeechSegment, TranscriptSegment, Word

from poise_audio import vad
from poise_audio.analysis import analyse_audio, count_words, pause_gaps, speech_rate_wpm
from poise_audio.asr import (
    DISFLUENT_PROMPT,
    FasterWhisperRecognizer,
    ModelNotFoundError,
    SpeechRecognizer,
    create_recognizer,
    repair_segments,
    resolve_model_path,
)
from poise_audio.prosody import measure_prosody

SR = 16000


def _frames(pattern: list[tuple[bool, int]]) -> np.ndarray:
    """Per-frame VAD decisions from (is_speech, frame count) runs."""
    return np.concatenate([np.full(n, flag, dtype=bool) for flag, n in pattern])


# --- voice activity -------------------------------------------------------------


def test_smoothing_closes_short_gaps_drops_blips_and_pads_edges():
    flags = _frames(
        [
            (False, 10),  # 0.00-0.30 s silence
            (True, 20),  # 0.30-0.90 speech
            (False, 5),  # 0.15 s stop closure: part of the word stream
            (True, 20),  # 1.05-1.65 speech
            (False, 100),  # 3 s pause
            (True, 6),  # 0.18 s click
            (False, 100),
            (True, 30),  # 7.83-8.73 speech
            (False, 10),
        ]
    )
    segments = vad.smooth(flags, vad.FRAME_S, duration_s=flags.size * vad.FRAME_S)

    assert [(s.start_s, s.end_s) for s in segments] == [(0.27, 1.68), (7.8, 8.76)]


def test_smoothing_keeps_pauses_at_least_the_pause_threshold_long():
    # Gaps of 8 to 14 frames (0.24-0.42 s) between 0.6 s stretches of speech.
    pattern: list[tuple[bool, int]] = [(True, 20)]
    for gap in range(8, 15):
        pattern += [(False, gap), (True, 20)]
    segments = vad.smooth(_frames(pattern), vad.FRAME_S, duration_s=100.0)

    gaps = [b.start_s - a.end_s for a, b in zip(segments, segments[1:])]
    assert gaps, "long enough gaps must survive as pauses"
    assert min(gaps) >= vad.MIN_PAUSE_S - 1e-6
    assert len(segments) < 8, "the shortest gaps must have been closed"


def test_noise_bursts_are_flagged_raw_but_not_reported_as_speech():
    rng = np.random.default_rng(7)
    audio = np.zeros(SR * 10, dtype=np.float32)
    for k in range(10):
        start = int((k + 0.5) * SR)
        audio[start : start + int(0.09 * SR)] = rng.standard_normal(int(0.09 * SR)) * 0.3

    raw = vad.frame_decisions(audio, SR, aggressiveness=2)
    assert raw.sum() > 0, "webrtcvad flags the bursts; smoothing is what removes them"
    assert vad.detect_speech(audio, SR, aggressiveness=2) == []


def test_vad_rejects_unsupported_input():
    with pytest.raises(ValueError):
        vad.detect_speech(np.zeros(SR, dtype=np.float32), sample_rate=22050)
    with pytest.raises(ValueError):
        vad.detect_speech(np.zeros(SR, dtype=np.float32), aggressiveness=4)
    with pytest.raises(ValueError):
        vad.detect_speech(np.zeros((2, SR), dtype=np.float32))
    assert vad.detect_speech(np.zeros(100, dtype=np.float32)) == []


# --- prosody ---------------------------------------------------------------------


def _tone(freqs_hz: np.ndarray, amplitude: float) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(freqs_hz) / SR
    return (amplitude * np.sin(phase)).astype(np.float32)


def test_prosody_of_a_steady_tone():
    audio = _tone(np.full(2 * SR, 150.0), amplitude=0.1)
    result = measure_prosody(audio, SR, [SpeechSegment(start_s=0.0, end_s=2.0)])

    assert result.pitch_mean_hz == pytest.approx(150.0, abs=1.5)
    assert result.pitch_variation_st is not None and result.pitch_variation_st < 0.1
    # RMS of a sine of amplitude 0.1 is 0.0707: -23.0 dBFS.
    assert result.loudness_db == pytest.approx(-23.0, abs=0.3)
    assert result.loudness_variation_db is not None and result.loudness_variation_db < 0.5


def test_pitch_variation_of_an_octave_glide_in_semitones():
    # Evenly spread over 12 semitones: standard deviation 12 / sqrt(12) = 3.46 st.
    semitones = np.linspace(0.0, 12.0, 3 * SR)
    audio = _tone(110.0 * 2 ** (semitones / 12.0), amplitude=0.2)
    result = measure_prosody(audio, SR, [SpeechSegment(start_s=0.0, end_s=3.0)])

    assert result.pitch_variation_st == pytest.approx(12 / np.sqrt(12), abs=0.25)
    assert 140 < result.pitch_mean_hz < 180  # mean of 110..220 Hz on a log sweep: ~159 Hz


def test_prosody_only_counts_speech_segments():
    audio = np.concatenate([_tone(np.full(SR, 120.0), 0.3), _tone(np.full(SR, 240.0), 0.03)])
    result = measure_prosody(audio, SR, [SpeechSegment(start_s=1.0, end_s=2.0)])

    assert result.pitch_mean_hz == pytest.approx(240.0, abs=3.0)
    assert result.loudness_db == pytest.approx(-33.5, abs=0.5)


def test_prosody_without_speech_is_not_measurable():
    audio = _tone(np.full(SR, 150.0), 0.1)
    empty = measure_prosody(audio, SR, [])
    assert (empty.pitch_mean_hz, empty.pitch_variation_st, empty.loudness_db) == (None, None, None)

    silent = measure_prosody(np.zeros(SR, dtype=np.float32), SR, [SpeechSegment(start_s=0.0, end_s=1.0)])
    assert silent.pitch_mean_hz is None and silent.pitch_variation_st is None


# --- answer-level analysis --------------------------------------------------------


def test_silence_is_not_measurable_rather_than_zero():
    signals = analyse_audio(np.zeros(SR * 10, dtype=np.float32), SR, [], AudioSettings())

    assert signals.duration_s == 10.0
    assert signals.speech_ratio == 0.0
    assert signals.speech_s == 0.0
    assert signals.speech_rate_wpm is None
    assert signals.pitch_mean_hz is None and signals.pitch_variation_st is None
    assert signals.loudness_db is None
    assert signals.first_speech_onset_s is None
    assert signals.pause_ratio is None and signals.mean_pause_s is None
    assert signals.pause_count == 0 and signals.long_pause_count == 0
    assert signals.segments == [] and signals.episodes == []


def test_empty_audio_is_not_measurable():
    signals = analyse_audio(np.zeros(0, dtype=np.float32), SR, [], AudioSettings())
    assert signals.duration_s == 0.0 and signals.speech_ratio == 0.0
    assert signals.speech_rate_wpm is None


def test_pause_gaps_are_between_segments_only():
    segments = [
        SpeechSegment(start_s=1.0, end_s=2.0),
        SpeechSegment(start_s=2.5, end_s=4.0),
        SpeechSegment(start_s=6.5, end_s=7.0),
    ]
    assert pause_gaps(segments) == [(2.0, 2.5), (4.0, 6.5)]
    assert pause_gaps(segments[:1]) == []


def test_word_count_ignores_punctuation_tokens_and_falls_back_to_text():
    timed = TranscriptSegment(
        start_s=0.0,
        end_s=2.0,
        text="A 4 % tax...",
        words=[
            Word(start_s=0.0, end_s=0.2, word="A"),
            Word(start_s=0.2, end_s=0.4, word="4"),
            Word(start_s=0.4, end_s=0.5, word="%"),
            Word(start_s=0.5, end_s=0.9, word="tax..."),
        ],
    )
    untimed = TranscriptSegment(start_s=2.0, end_s=3.0, text="well, good luck -")
    assert count_words([timed, untimed]) == 6


def test_speech_rate():
    assert speech_rate_wpm(30, 12.0) == 150.0
    assert speech_rate_wpm(0, 12.0) is None
    assert speech_rate_wpm(30, 0.0) is None


# --- speech recognition plumbing ---------------------------------------------------


def _w(start: float, end: float, word: str, probability: float = 0.9) -> SimpleNamespace:
    return SimpleNamespace(start=start, end=end, word=word, probability=probability)


def test_repair_makes_word_times_monotonic_and_segments_span_words():
    raw = [
        SimpleNamespace(
            start=0.0,
            end=2.0,
            text=" Hello there, friend.",
            words=[_w(-0.1, 0.5, " Hello"), _w(0.4, 0.3, " there,"), _w(0.9, 1.9, " friend.")],
        ),
        SimpleNamespace(
            start=1.5,
            end=3.5,
            text=" Again",
            words=[_w(1.6, 2.2, " Again"), _w(2.0, 2.1, " "), _w(3.0, 9.0, " later")],
        ),
        SimpleNamespace(start=2.5, end=3.2, text=" (no words)", words=None),
    ]
    segments = repair_segments(raw, duration_s=4.0)
    words = [w for s in segments for w in s.words]

    assert [w.word for w in words] == ["Hello", "there,", "friend.", "Again", "later"]
    starts = [w.start_s for w in words]
    assert starts == sorted(starts)
    assert all(w.start_s <= w.end_s for w in words)
    assert all(a.end_s <= b.start_s for a, b in zip(words, words[1:])), "overlaps are cut"
    assert words[0].start_s == 0.0 and words[-1].end_s == 4.0
    assert words[2].end_s == 1.6  # "friend." cut where the next segment's first word starts
    assert (segments[0].start_s, segments[0].end_s) == (0.0, 1.6)
    assert (segments[1].start_s, segments[1].end_s) == (1.6, 4.0)
    assert segments[2].words == [] and segments[2].start_s >= segments[1].start_s


def test_missing_model_folder_fails_without_going_online(tmp_path):
    with pytest.raises(ModelNotFoundError):
        resolve_model_path(AudioSettings(asr_model_path="tiny.en"))
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="tokenizer.json"):
        resolve_model_path(AudioSettings(asr_model_path=str(tmp_path)))


def test_bundled_model_is_the_default():
    path = resolve_model_path(AudioSettings())
    assert (path / "model.bin").is_file()


def test_recognizer_is_lazy_and_prompt_never_carries_the_question():
    recognizer = create_recognizer(AudioSettings())
    assert isinstance(recognizer, SpeechRecognizer)
    assert isinstance(recognizer, FasterWhisperRecognizer)
    assert recognizer.transcribe(np.zeros(0, dtype=np.float32)) == []
    assert recognizer._model is None, "no model is loaded before there is audio to transcribe"

    # The question would prime the recogniser with the very words active listening counts.
    assert recognizer.prompt("  Tell me about\na conflict.  ") == DISFLUENT_PROMPT
    assert recognizer.prompt() == DISFLUENT_PROMPT
    fluent = FasterWhisperRecognizer(AudioSettings(asr_disfluent_prompt=False))
    assert fluent.prompt() is None
    assert fluent.prompt("Why us?") is None
    recognizer.close()
