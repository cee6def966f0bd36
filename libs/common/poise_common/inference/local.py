"""In-process inference: the runners in worker threads (their native code releases the GIL)."""

from __future__ import annotations

import asyncio

import numpy as np

from poise_common.inference.backend import FACE, SPEECH, FaceStream, InferenceBackend
from poise_common.inference.faces import FaceLandmarkerRunner, RawFaces, decode_jpeg_rgb
from poise_common.inference.speech import RawSegment, WhisperRunner
from poise_common.settings import PoiseSettings


class _LocalFaceStream(FaceStream):
    def __init__(self, backend: "LocalBackend", settings: PoiseSettings) -> None:
        self._backend = backend
        self._settings = settings
        self._runner: FaceLandmarkerRunner | None = None

    def _detect(self, jpeg: bytes, t_ms: int) -> RawFaces:
        if self._runner is None:
            vision = self._settings.vision
            self._runner = FaceLandmarkerRunner(vision.face_model_path, vision.max_faces)
        return self._runner.detect(decode_jpeg_rgb(jpeg), t_ms)

    async def detect(self, jpeg: bytes, t_ms: int) -> RawFaces:
        with self._backend.timed("face_landmarker"):
            return await asyncio.to_thread(self._detect, jpeg, t_ms)

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None


class LocalBackend(InferenceBackend):
    name = "local"

    def __init__(self, settings: PoiseSettings) -> None:
        self.settings = settings
        self._whisper: WhisperRunner | None = None

    async def start(self, needs: set[str]) -> None:
        if FACE in needs:
            vision = self.settings.vision
            if not vision.face_model_path.is_file():
                raise FileNotFoundError(
                    f"face model not found at {vision.face_model_path}; run `make setup` "
                    "or set POISE_VISION__FACE_MODEL_PATH"
                )
            # Build and drop one landmarker: MediaPipe's import and graph set-up happen now,
            # not on the first answer.
            await asyncio.to_thread(lambda: FaceLandmarkerRunner(vision.face_model_path, vision.max_faces).close())
        if SPEECH in needs:
            audio = self.settings.audio
            self._whisper = WhisperRunner(
                audio.asr_model_path,
                compute_type=audio.asr_compute_type,
                threads=audio.asr_threads,
                beam_size=audio.asr_beam_size,
            )
            await asyncio.to_thread(self._whisper.load)

    async def stop(self) -> None:
        if self._whisper is not None:
            self._whisper.close()

    def face_stream(self, stream_id: str) -> FaceStream:
        return _LocalFaceStream(self, self.settings)

    async def transcribe(self, samples: np.ndarray, prompt: str | None) -> list[RawSegment]:
        if self._whisper is None:
            raise RuntimeError("the speech model was not started (start({'speech'}))")
        with self.timed("speech_recognizer"):
            return await asyncio.to_thread(self._whisper.transcribe, samples, prompt)
