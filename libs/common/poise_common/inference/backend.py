"""The inference backend interface, chosen by ``POISE_INFERENCE__URL``.

Services ask for what they need (a face stream per answer, a transcription) and never
learn whether the model runs in this process or on a Triton server.
"""

from __future__ import annotations

import abc
import asyncio
import time
from contextlib import contextmanager

import numpy as np

from poise_common.bus.errors import TransportUnavailable
from poise_common.inference.faces import FACE_METHOD, RawFaces
from poise_common.inference.speech import RawSegment
from poise_common.metrics import InferenceMetrics, NullMetrics
from poise_common.settings import PoiseSettings

FACE = "face"
SPEECH = "speech"


class InferenceUnavailable(TransportUnavailable):
    """The model server is away; a consumer waits for it rather than failing the message."""


class StreamLost(RuntimeError):
    """The server lost a stream's state (it restarted): the stream must start over from its first frame."""


class InferenceConfigError(RuntimeError):
    """The server's models do not fit this client (missing, not ready, batch too small)."""


class FaceStream(abc.ABC):
    """Frames of one answer, in time order, through one tracking face model."""

    # Frames a caller may submit before it awaits the oldest one's answer. 1: one frame at a
    # time; more lets the model start on a frame while the caller publishes the previous one.
    depth: int = 1

    @abc.abstractmethod
    async def detect(self, jpeg: bytes, t_ms: int) -> RawFaces: ...

    def submit(self, jpeg: bytes, t_ms: int) -> asyncio.Future[RawFaces]:
        """Start ``detect`` on a frame now; submitted frames run in the order they were submitted."""
        return asyncio.ensure_future(self.detect(jpeg, t_ms))

    @abc.abstractmethod
    async def close(self) -> None: ...


class InferenceBackend(abc.ABC):
    name: str
    settings: PoiseSettings
    metrics: InferenceMetrics | NullMetrics = NullMetrics()

    def face_method(self) -> str:
        """How this backend's face streams measure faces (``FACE_METHOD``, and the span after which
        they start over): recorded with every answer's features."""
        return f"{FACE_METHOD}/span-{self.settings.vision.face_span_frames}"

    @contextmanager
    def timed(self, model: str):
        """Record one call's latency and outcome in the client-side histogram."""
        started = time.perf_counter()
        outcome = "error"
        try:
            yield
            outcome = "ok"
        finally:
            self.metrics.seconds.labels(backend=self.name, model=model, outcome=outcome).observe(
                time.perf_counter() - started
            )

    @abc.abstractmethod
    async def start(self, needs: set[str]) -> None:
        """Make sure the models in ``needs`` ({"face", "speech"}) can serve; fail clearly if not."""

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    def face_stream(self, stream_id: str) -> FaceStream: ...

    @abc.abstractmethod
    async def transcribe(self, samples: np.ndarray, prompt: str | None) -> list[RawSegment]: ...


def create_backend(
    settings: PoiseSettings, metrics: InferenceMetrics | None = None, whole_pipeline: bool = False
) -> InferenceBackend:
    """The backend ``settings.inference.url`` names. ``whole_pipeline``: this process runs every
    stage (``poise score``, ``poise serve``), which ``vision.face_model_cpu`` "auto" goes by."""
    url = settings.inference.url
    if url == "local":
        from poise_common.inference.local import LocalBackend

        backend: InferenceBackend = LocalBackend(settings, whole_pipeline)
    elif url.startswith("triton://"):
        from poise_common.inference.triton import TritonBackend

        backend = TritonBackend(url.removeprefix("triton://"), settings)
    else:
        raise ValueError(f"unknown inference URL {url!r}: use local or triton://host:port")
    if metrics is not None:
        backend.metrics = metrics
    return backend
