"""The audio's time series for plots, on synthetic signals whose values are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from poise_common.settings import AudioSettings
from poise_common.signals import SpeechSegment, TranscriptSegment, Word
from poise_devstack.speech_checks import load_audio_16k

from poise_audio.analysis import analyse_audio, audio_series, count_words, word_times
from poise_audio.prosody import measure_prosody

SR = 16000


def _tone(hz: float, seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_pitch_and_loudness_per_second_follow_the_voice_and_are_null_in_silence():
    # 2 s at 150 Hz, 2 s of silence, 2 s at 200 Hz and 12 dB quieter.
    audio = np.concatenate([_tone(150.0, 2.0, 0.2), np.zeros(2 * SR, np.float32), _tone(200.0, 2.0, 0.05)])
    speech = [SpeechSegment(start_s=0.0, end_s=2.0), SpeechSegment(start_s=4.0, end_s=6.0)]
    prosody = measure_prosody(audio, SR, speech)
    series = audio_series(6.0, speech, [(2.0, 4.0)], [], prosody.track)

    assert series.step_s == 1.0
    assert series.pitch_hz[0] == pytest.approx(150.0, abs=2.0)
    assert series.pitch_hz[5] == pytest.approx(200.0, abs=2.0)
    assert series.pitch_hz[2:4] == [None, None]
    assert series.loudness_db[2:4] == [None, None]
    # Amplitude 0.2 vs 0.05: 12 dB apart (-17 and -29 dBFS).
    assert series.loudness_db[0] - series.loudness_db[5] == pytest.approx(12.0, abs=0.5)
    assert series.pause == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    assert series.speech_rate_wpm == [None] * 6  # no words


def test_speech_rate_per_second_uses_the_words_and_untimed_segments_spread_evenly():
    timed = TranscriptSegment(start_s=0.0, end_s=2.0, text="one two", words=[
        Word(start_s=0.0, end_s=0.5, word="one"), Word(start_s=0.5, end_s=1.0, word="two"),
        Word(start_s=1.0, end_s=1.1, word="..."),  # not a word
    ])
    untimed = TranscriptSegment(start_s=2.0, end_s=4.0, text="three four five six")
    assert word_times([timed, untimed]) == pytest.approx([0.25, 0.75, 2.25, 2.75, 3.25, 3.75])
    assert count_words([timed, untimed]) == 6

    series = audio_series(4.0, [SpeechSegment(start_s=0.0, end_s=4.0)], [], [timed, untimed], None)
    # The 5 s window around 1.5 s spans 0..4: six words in four seconds of speech.
    assert series.speech_rate_wpm[1] == pytest.approx(90.0)
    assert series.pitch_hz == [None] * 4 and series.loudness_db == [None] * 4


@pytest.mark.media
def test_a_real_answers_series_agree_with_its_whole_answer_figures(media_dir):
    signals = analyse_audio(load_audio_16k(media_dir / "jfk.flac"), SR, [], AudioSettings())
    series = signals.series
    assert series is not None
    bins = len(series.pause)
    assert bins == math.ceil(signals.duration_s) and len(series.pitch_hz) == len(series.loudness_db) == bins
    # Pause shares add up, bin length by bin length, to the pauses between the speech segments.
    lengths = [min(1.0, signals.duration_s - i) for i in range(bins)]
    gaps = sum(b.start_s - a.end_s for a, b in zip(signals.segments, signals.segments[1:]))
    assert sum(share * length for share, length in zip(series.pause, lengths)) == pytest.approx(gaps, abs=0.02)
    # Pitch per second stays around the speaker's mean, and is measured wherever most of a second is voiced.
    voiced = [v for v in series.pitch_hz if v is not None]
    assert len(voiced) >= bins // 2
    assert all(0.6 * signals.pitch_mean_hz < v < 1.6 * signals.pitch_mean_hz for v in voiced)
    levels = [v for v in series.loudness_db if v is not None]
    assert min(levels) <= signals.loudness_db <= max(levels)
