"""How an answer was spoken: voice activity, pauses, pace and prosody in one record.

Silence is "not measurable", never a low score: an answer with no detected speech
gets ``speech_ratio`` 0 and ``None`` for every rate, pause and prosody figure.
"""

from __future__ import annotations

import logging
import re
import time

import numpy as np
from poise_common.settings import AudioSettings
from poise_common.signals import AudioSignals, Episode, SpeechSegment, TranscriptSegment

from poise_audio.prosody import measure_prosody
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
    samples: np.ndarray, sample_rate: int, transcript: list[TranscriptSegment], settings: AudioSettings
) -> AudioSignals:
    """Measure one answer from its mono audio in [-1, 1] and its transcript."""
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {audio.shape}")
    duration_s = audio.size / sample_rate if sample_rate > 0 else 0.0

    started = time.perf_counter()
    segments = detect_speech(audio, sample_rate, settings.vad_aggressiveness)
    vad_s = time.perf_counter() - started
    speech_s = sum(s.end_s - s.start_s for s in segments)

    started = time.perf_counter()
    prosody = measure_prosody(audio, sample_rate, segments)
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


def count_words(transcript: list[TranscriptSegment]) -> int:
    """Spoken words in a transcript: timed words where present, else the segment text."""
    total = 0
    for segment in transcript:
        tokens = [w.word for w in segment.words] if segment.words else segment.text.split()
        total += sum(1 for t in tokens if _WORDLIKE.search(t))
    return total


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
