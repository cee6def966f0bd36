"""In-process inference: the runners in worker threads (their native code releases the GIL)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from poise_common.cpus import usable_cpus
from poise_common.inference.backend import FACE, SPEECH, FaceStream, InferenceBackend
from poise_common.inference.cpu_reservation import CpuReservation
from poise_common.inference.face_lanes import LanedFaceStream
from poise_common.inference.faces import FaceLandmarkerRunner, RawFaces, decode_jpeg_rgb
from poise_common.inference.speech import RawSegment, WhisperRunner
from poise_common.priority import run_nicer
from poise_common.settings import PoiseSettings


MAX_AUTO_FACE_LANES = 4

# glibc's mallopt parameter for the number of heaps ("arenas") threads allocate from.
_M_ARENA_MAX = -8
_ARENAS = 2


def _cap_malloc_arenas() -> None:
    """Let this process's threads share two glibc heaps instead of one per busy thread (up to 16).

    The models' threads allocate frames and audio buffers from several threads at once; with a
    heap each, memory freed in one is never reused by another, and a process scoring answer after
    answer grew by about 20 MB an answer. The models' work is native and CPU-bound, so two heaps
    cost no measurable speed. Elsewhere than glibc this does nothing.
    """
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).mallopt(_M_ARENA_MAX, _ARENAS)
    except (OSError, AttributeError, TypeError):
        pass


def _lower_thread_priority(nice: int) -> None:
    """Make the calling thread, and the threads it starts from now on, ``nice`` steps nicer.

    Linux schedules threads on their own, so only this thread yields: speech recognition's
    native threads (CTranslate2's, started when its model loads here) inherit it, the face
    model's do not. Elsewhere the call would reach the whole process, so it does nothing.
    """
    if sys.platform.startswith("linux"):
        run_nicer(threading.get_native_id(), nice)


class _LocalFaceStream(LanedFaceStream):
    """An answer's frames through ``backend.face_lanes`` landmarkers (``FaceLanes``): the faces
    are exactly what one landmarker started over at every span finds."""

    def __init__(self, backend: "LocalBackend", settings: PoiseSettings) -> None:
        self._backend = backend
        self._vision = settings.vision
        self._runners: list[FaceLandmarkerRunner | None] = [None] * backend.face_lanes
        super().__init__(backend.face_lanes, self._vision.face_span_frames, decode_jpeg_rgb)
        backend.cpus.opened(self)

    def _detect(self, lane: int, rgb: np.ndarray, t_ms: int, start_over: bool) -> RawFaces:
        with self._backend.timed("face_landmarker"):
            runner = self._runners[lane]
            if runner is None:
                # Before the model starts: the threads MediaPipe starts here (for several faces)
                # share this thread's CPU.
                self._backend.cpus.claim(self)
                runner = self._runners[lane] = FaceLandmarkerRunner(self._vision.face_model_path, self._vision.max_faces)
            elif start_over:
                runner.start_over()
            return runner.detect(rgb, t_ms)

    def _close_lane(self, lane: int) -> None:
        runner, self._runners[lane] = self._runners[lane], None
        if runner is not None:
            runner.close()

    def _after_close(self) -> None:
        self._backend.cpus.closed(self)


class LocalBackend(InferenceBackend):
    name = "local"

    def __init__(self, settings: PoiseSettings, whole_pipeline: bool = False) -> None:
        self.settings = settings
        vision = settings.vision
        # More lanes than CPUs would only take turns; past four, the answer's last span waits alone.
        self.face_lanes = vision.face_lanes or min(usable_cpus(), MAX_AUTO_FACE_LANES)
        mode = vision.face_model_cpu
        # A CPU of its own is for one model thread; several lanes share every CPU.
        self.cpus = CpuReservation(self.face_lanes == 1 and (mode == "on" or (mode == "auto" and whole_pipeline)))
        self._whisper: WhisperRunner | None = None
        # The speech model loads and runs on a thread of its own, at its own priority: an
        # answer's transcript has slack, its frames through the face model do not.
        self._speech_thread: ThreadPoolExecutor | None = None

    async def start(self, needs: set[str]) -> None:
        _cap_malloc_arenas()
        if FACE in needs:
            vision = self.settings.vision
            if not vision.face_model_path.is_file():
                raise FileNotFoundError(
                    f"face model not found at {vision.face_model_path}; run `make setup` "
                    "or set POISE_VISION__FACE_MODEL_PATH"
                )
            # Build and drop one runner: the face models load now (and fail now if they cannot),
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
            self._speech_thread = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="poise-speech",
                initializer=_lower_thread_priority, initargs=(audio.asr_nice,),
            )
            await asyncio.wrap_future(self._speech_thread.submit(self._whisper.load))

    async def stop(self) -> None:
        if self._whisper is not None:
            self._whisper.close()
        if self._speech_thread is not None:
            self._speech_thread.shutdown(wait=False)
            self._speech_thread = None

    def face_stream(self, stream_id: str) -> FaceStream:
        return _LocalFaceStream(self, self.settings)

    async def transcribe(self, samples: np.ndarray, prompt: str | None) -> list[RawSegment]:
        if self._whisper is None or self._speech_thread is None:
            raise RuntimeError("the speech model was not started (start({'speech'}))")
        with self.timed("speech_recognizer"):
            return await asyncio.wrap_future(self._speech_thread.submit(self._whisper.transcribe, samples, prompt))
