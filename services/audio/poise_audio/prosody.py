"""Prosody of an answer: pitch level and movement, loudness level and movement.

Pitch comes from Praat (through parselmouth) in two passes. A fixed pitch range is
the classic cause of octave errors: a floor too low for a high voice halves some F0
values, a ceiling too high for a low voice doubles some. The first pass uses a wide
60-600 Hz range; its quartiles then set the speaker's own range for the second pass,
following De Looze & Hirst (2008): floor = 0.75 * Q1, ceiling = 1.5 * Q3.

Loudness is RMS level in dBFS, where 0 dB is the RMS of a full-scale square wave
(a full-scale sine reads -3 dB). It is a recording level, so it depends on the
microphone and gain as much as on the speaker; variation is the more comparable figure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import parselmouth
from poise_common.signals import SpeechSegment

log = logging.getLogger(__name__)

# Praat's analysis grid: 10 ms is its default for speech and fine enough for
# statistics over whole answers.
TIME_STEP_S = 0.01

# First pass: wide enough for deep male to high child voices.
FIRST_PASS_FLOOR_HZ = 60.0
FIRST_PASS_CEILING_HZ = 600.0

# Speaker-adaptive range (De Looze & Hirst 2008), kept inside hard limits so that a
# first pass full of errors cannot make the window absurdly long or the range absurd.
FLOOR_FACTOR = 0.75
CEILING_FACTOR = 1.5
MIN_FLOOR_HZ = 40.0
MAX_CEILING_HZ = 800.0

# Statistics over fewer voiced frames than this (a quarter second) are noise, so
# pitch is reported as not measurable instead.
MIN_VOICED_FRAMES = 25

# Window of each loudness frame: at least two periods of the lowest voices, so the
# level does not ripple with the pitch pulses.
LOUDNESS_WINDOW_S = 0.04

# Digital silence has no level in dB; clamp it to a value below any real recording.
SILENCE_DBFS = -100.0


@dataclass(frozen=True)
class ProsodyTrack:
    """The frames behind the figures (times in seconds): voiced pitch in Hz and level in dBFS."""

    pitch_times_s: np.ndarray
    pitch_hz: np.ndarray
    level_times_s: np.ndarray
    level_db: np.ndarray


@dataclass(frozen=True)
class Prosody:
    """Prosodic measurements over the speech of one answer; ``None`` means not measurable."""

    pitch_mean_hz: float | None
    pitch_variation_st: float | None
    loudness_db: float | None
    loudness_variation_db: float | None
    voiced_s: float = 0.0
    # For time series only; arrays do not compare, and the figures above say all a caller compares.
    track: ProsodyTrack | None = field(default=None, compare=False, repr=False)

    @classmethod
    def unmeasurable(cls) -> Prosody:
        return cls(None, None, None, None, 0.0)


def measure_prosody(samples: np.ndarray, sample_rate: int, speech: list[SpeechSegment]) -> Prosody:
    """Measure pitch and loudness inside ``speech`` segments of mono audio in [-1, 1].

    Pitch figures cover voiced frames inside speech. Loudness covers the same voiced
    frames, or every speech frame when too little is voiced to go on.
    """
    # One float64 copy, cleaned in place: on a 20-minute answer each copy is 150 MB.
    audio = np.nan_to_num(np.array(samples, dtype=np.float64), nan=0.0, copy=False)
    if audio.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {audio.shape}")
    if not speech or audio.size == 0:
        return Prosody.unmeasurable()
    # Praat needs at least one analysis window (3 periods of the floor) of signal.
    if audio.size / sample_rate < 3.0 / FIRST_PASS_FLOOR_HZ + TIME_STEP_S:
        return Prosody.unmeasurable()

    sound = parselmouth.Sound(audio, sampling_frequency=float(sample_rate))
    times, f0 = _pitch_track(sound, FIRST_PASS_FLOOR_HZ, FIRST_PASS_CEILING_HZ)
    in_speech = _inside(times, speech)
    first = f0[in_speech & (f0 > 0)]

    pitch_mean = pitch_var = None
    voiced_times = voiced_hz = np.zeros(0)
    if first.size >= MIN_VOICED_FRAMES:
        q1, q3 = np.percentile(first, [25, 75])
        floor = max(MIN_FLOOR_HZ, FLOOR_FACTOR * float(q1))
        ceiling = min(MAX_CEILING_HZ, CEILING_FACTOR * float(q3))
        times, f0 = _pitch_track(sound, floor, ceiling)
        in_speech = _inside(times, speech)
        voiced = in_speech & (f0 > 0)
        values = f0[voiced]
        log.debug(
            "pitch range adapted",
            extra={
                "floor_hz": round(floor, 1),
                "ceiling_hz": round(ceiling, 1),
                "voiced_frames": int(values.size),
            },
        )
        if values.size >= MIN_VOICED_FRAMES:
            pitch_mean = float(np.mean(values))
            semitones = 12.0 * np.log2(values / np.median(values))
            pitch_var = float(np.std(semitones))
            voiced_times, voiced_hz = times[voiced], values

    if voiced_times.size >= MIN_VOICED_FRAMES:
        level_times = voiced_times
    else:
        # Unvoiced speech (whisper, fricatives) still has a level worth reporting.
        level_times = _speech_grid(speech, audio.size / sample_rate)
    loud_mean = loud_var = None
    levels = np.zeros(0)
    if level_times.size:
        levels = _levels_dbfs(audio, sample_rate, level_times)
        loud_mean = float(np.mean(levels))
        loud_var = float(np.std(levels))

    return Prosody(
        pitch_mean_hz=pitch_mean,
        pitch_variation_st=pitch_var,
        loudness_db=loud_mean,
        loudness_variation_db=loud_var,
        voiced_s=round(float(voiced_times.size * TIME_STEP_S), 3),
        track=ProsodyTrack(voiced_times, voiced_hz, level_times, levels),
    )


def _pitch_track(
    sound: parselmouth.Sound, floor_hz: float, ceiling_hz: float
) -> tuple[np.ndarray, np.ndarray]:
    """Frame times and F0 in Hz (0 where unvoiced) from Praat's autocorrelation method."""
    pitch = sound.to_pitch_ac(time_step=TIME_STEP_S, pitch_floor=floor_hz, pitch_ceiling=ceiling_hz)
    return np.asarray(pitch.xs()), np.asarray(pitch.selected_array["frequency"], dtype=np.float64)


def _inside(times: np.ndarray, segments: list[SpeechSegment]) -> np.ndarray:
    """Mask of ``times`` that fall inside any segment (segments sorted, non-overlapping)."""
    starts = np.array([s.start_s for s in segments])
    ends = np.array([s.end_s for s in segments])
    idx = np.searchsorted(starts, times, side="right") - 1
    valid = idx >= 0
    mask = np.zeros(times.shape, dtype=bool)
    mask[valid] = times[valid] < ends[idx[valid]]
    return mask


def _speech_grid(segments: list[SpeechSegment], duration_s: float) -> np.ndarray:
    """Frame centres every TIME_STEP_S inside the speech segments."""
    grid = np.arange(TIME_STEP_S / 2, duration_s, TIME_STEP_S)
    return grid[_inside(grid, segments)]


def _levels_dbfs(audio: np.ndarray, sample_rate: int, centres_s: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of a LOUDNESS_WINDOW_S window around each centre."""
    energy = np.concatenate(([0.0], np.cumsum(audio * audio)))
    half = max(1, int(round(LOUDNESS_WINDOW_S * sample_rate / 2)))
    centres = np.round(centres_s * sample_rate).astype(np.int64)
    lo = np.clip(centres - half, 0, audio.size)
    hi = np.clip(centres + half, 0, audio.size)
    width = np.maximum(hi - lo, 1)
    mean_square = (energy[hi] - energy[lo]) / width
    floor = 10.0 ** (SILENCE_DBFS / 10.0)
    return 10.0 * np.log10(np.maximum(mean_square, floor))
