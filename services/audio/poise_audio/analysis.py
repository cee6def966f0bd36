"""How an answer was spoken: voice activity, pauses, pace and prosody in one record.

Silence is "not measurable", never a low score: an answer with no detected speech
gets ``speech_ratio`` 0 and ``None`` for every rate, pause and prosody figure.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

import numpy as np
from poise_common.behaviour.series import SERIES_STEP_S, bin_count, bin_coverage, bin_means, windowed_rate_per_min
from poise_common.settings import AudioSettings
from poise_common.signals import AudioSeries, AudioSignals, Episode, SpeechSegment, TranscriptSegment

from poise_audio.prosody import Prosody, ProsodyTrack, measure_prosody
from poise_audio.vad import detect_speech

log = logging.getLogger(__name__)

# A silence this long inside an answer reads as the speaker losing the thread rather
# than planning the next phrase: most fluent between-clause pauses stay under 1 s and
# pauses of 2 s and more are rare enough in interviews to be worth pointing at.
LONG_PAUSE_S = 2.0

# A token counts as a word when it holds at least one letter or digit; Whisper may
# emit stray punctuation ("...", "-") as words of their own.
_WORDLIKE = re.compile(r"\w")


def analyse_audio(
    samples: np.ndarray, sample_rate: int, transcript: list[TranscriptSegment], settings: AudioSettings,
    prosody_of: Callable[[np.ndarray, int, list[SpeechSegment]], Prosody] = measure_prosody,
) -> AudioSignals:
    """Measure one answer from its mono audio in [-1, 1] and its transcript (``prosody_of`` may
    measure prosody elsewhere, as :class:`poise_audio.prosody_process.ProsodyProcess` does)."""
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {audio.shape}")
    duration_s = audio.size / sample_rate if sample_rate > 0 else 0.0

    started = time.perf_counter()
    segments = detect_speech(audio, sample_rate, settings.vad_aggressiveness)
    vad_s = time.perf_counter() - started
    speech_s = sum(s.end_s - s.start_s for s in segments)

    started = time.perf_counter()
    prosody = prosody_of(audio, sample_rate, segments)
    prosody_s = time.perf_counter() - started

    pauses = pause_gaps(segments)
    long_pauses = [(a, b) for a, b in pauses if b - a >= LONG_PAUSE_S - 1e-9]
    words = count_words(transcript)

    signals = AudioSignals(
        duration_s=round(duration_s, 3),
        speech_s=round(speech_s, 3),
        speech_ratio=round(speech_s / duration_s, 4) if duration_s > 0 else 0.0,
        first_speech_onset_s=segments[0].start_s if segments else None,
        pause_ratio=_pause_ratio(segments, pauses),
        pause_count=len(pauses),
        mean_pause_s=round(float(np.mean([b - a for a, b in pauses])), 3) if pauses else None,
        long_pause_count=len(long_pauses),
        speech_rate_wpm=speech_rate_wpm(words, speech_s),
        pitch_mean_hz=_round(prosody.pitch_mean_hz, 1),
        pitch_variation_st=_round(prosody.pitch_variation_st, 2),
        loudness_db=_round(prosody.loudness_db, 1),
        loudness_variation_db=_round(prosody.loudness_variation_db, 2),
        segments=segments,
        episodes=[Episode(behaviour="long_pause", start_s=a, end_s=b) for a, b in long_pauses],
        series=audio_series(duration_s, segments, pauses, transcript, prosody.track),
    )
    log.info(
        "audio analysed",
        extra={
            "audio_s": signals.duration_s,
            "speech_s": signals.speech_s,
            "segments": len(segments),
            "words": words,
            "vad_s": round(vad_s, 4),
            "prosody_s": round(prosody_s, 3),
        },
    )
    return signals


def pause_gaps(segments: list[SpeechSegment]) -> list[tuple[float, float]]:
    """(start, end) of each silence between consecutive speech segments.

    Silence before the first word is reaction time and after the last one is the
    recording's tail; neither is a pause in the answer.
    """
    return [
        (prev.end_s, nxt.start_s)
        for prev, nxt in zip(segments, segments[1:])
        if nxt.start_s > prev.end_s
    ]


def audio_series(
    duration_s: float, segments: list[SpeechSegment], pauses: list[tuple[float, float]],
    transcript: list[TranscriptSegment], track: ProsodyTrack | None,
) -> AudioSeries:
    """Pauses, pace, pitch and loudness second by second, from what the whole-answer figures use."""
    empty = [None] * bin_count(duration_s)
    return AudioSeries(
        step_s=SERIES_STEP_S,
        pause=bin_coverage(pauses, duration_s),
        speech_rate_wpm=windowed_rate_per_min(
            word_times(transcript), [(s.start_s, s.end_s) for s in segments], duration_s
        ),
        pitch_hz=bin_means(track.pitch_times_s, track.pitch_hz, duration_s, digits=1) if track else empty,
        loudness_db=bin_means(track.level_times_s, track.level_db, duration_s, digits=1) if track else empty,
    )


def word_times(transcript: list[TranscriptSegment]) -> list[float]:
    """The middle of each spoken word (the words count_words counts); a segment without word
    timings spreads its words evenly over its span."""
    times = []
    for segment in transcript:
        if segment.words:
            times += [(w.start_s + w.end_s) / 2 for w in segment.words if _WORDLIKE.search(w.word)]
            continue
        tokens = [t for t in segment.text.split() if _WORDLIKE.search(t)]
        span = segment.end_s - segment.start_s
        times += [segment.start_s + span * (i + 0.5) / len(tokens) for i in range(len(tokens))]
    return times


def count_words(transcript: list[TranscriptSegment]) -> int:
    """Spoken words in a transcript: timed words where present, else the segment text."""
    return len(word_times(transcript))


def speech_rate_wpm(words: int, speech_s: float) -> float | None:
    """Words per minute of voiced time; ``None`` when there is no speech or no words.

    Voiced time excludes pauses, so this is a speaking pace that pausing does not
    dilute. Speech with no recognised words (humming, another language, noise the
    VAD let through) has no measurable pace rather than a pace of zero.
    """
    if speech_s <= 0 or words <= 0:
        return None
    return round(words / (speech_s / 60.0), 1)


def _pause_ratio(segments: list[SpeechSegment], pauses: list[tuple[float, float]]) -> float | None:
    if not segments:
        return None
    span = segments[-1].end_s - segments[0].start_s
    if span <= 0:
        return None
    return round(sum(b - a for a, b in pauses) / span, 4)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
