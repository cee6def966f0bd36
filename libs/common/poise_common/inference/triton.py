"""Inference on NVIDIA Triton over gRPC (``tritonclient.grpc.aio``).

Every call has a deadline and is retried with backoff while the server is unavailable;
past the retries it raises ``InferenceUnavailable``, which consumers treat like a bus
outage (wait, never dead-letter). Faces are a Triton *sequence* per answer (the answer id is
the correlation id), so one answer stays on one model instance with its tracking state.
Many answers' requests in flight at once let Triton's batchers batch across interviews.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from poise_common.inference.backend import (
    FACE,
    SPEECH,
    FaceStream,
    InferenceBackend,
    InferenceConfigError,
    InferenceUnavailable,
    StreamLost,
)
from poise_common.inference.face_lanes import LanedFaceStream
from poise_common.inference.faces import BLENDSHAPE_NAMES, LANDMARKS, RawFaces
from poise_common.inference.speech import RawSegment
from poise_common.settings import PoiseSettings

log = logging.getLogger(__name__)

_RETRYABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED")


def checked_result(result, model: str, outputs: list[str], *, in_sequence: bool):
    """``result`` if it holds every output asked for.

    A Python-backend server whose shared memory is damaged (Triton 2.51 under heavy load, before
    it crashed: deploy/triton/README.md) answered requests without their outputs. Within a
    sequence the server's state for it cannot be trusted after that (StreamLost: the stream
    starts over from its first frame); a stateless call is simply unavailable this time.
    """
    missing = [name for name in outputs if result.get_output(name) is None]
    if not missing:
        return result
    message = f"Triton's {model!r} answered without {', '.join(missing)}"
    log.warning("triton answer lacks outputs", extra={"model": model, "missing": len(missing)})
    raise StreamLost(message) if in_sequence else InferenceUnavailable(message)


def faces_from_result(result) -> RawFaces:
    """The face model's answer for one frame, its arrays checked against its face count."""
    count = int(result.as_numpy("FACE_COUNT").reshape(-1)[0])
    if count == 0:
        return RawFaces.empty()
    faces = RawFaces(
        result.as_numpy("LANDMARKS")[0].astype(np.float32),
        result.as_numpy("BLENDSHAPES")[0].astype(np.float32),
        result.as_numpy("MATRICES")[0].astype(np.float32),
    )
    shapes = (faces.landmarks.shape, faces.blendshapes.shape, faces.matrices.shape)
    if shapes != ((count, LANDMARKS, 3), (count, len(BLENDSHAPE_NAMES)), (count, 4, 4)):
        raise StreamLost(f"the face model answered {count} faces with arrays of shapes {shapes}")
    return faces


def _bytes_input(name: str, value: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[value]], dtype=np.object_))
    return tensor


class _TritonFaceStream(FaceStream):
    """One answer's frames in one Triton sequence, one at a time. As in-process (``FaceLanes``),
    each span of ``vision.face_span_frames`` frames starts over: a black frame first leaves the
    server's landmarker following no face, exactly as a new one."""

    def __init__(self, backend: "TritonBackend", stream_id: str) -> None:
        self.backend = backend
        self.stream_id = stream_id
        self.started = False
        self._span = backend.settings.vision.face_span_frames
        self._frames = 0  # frames done: a frame the bus brings again (server unreachable) counts once

    async def detect(self, jpeg: bytes, t_ms: int) -> RawFaces:
        start = not self.started
        if not start and self._frames % self._span == 0:
            await self.backend.start_over(self.stream_id, jpeg, t_ms)
        try:
            faces = await self.backend.detect_frame(self.stream_id, jpeg, t_ms, start=start)
        except (InferenceUnavailable, StreamLost):
            raise
        except Exception:
            self._frames += 1  # the frame's own failure: it will not come again
            raise
        self.started = True
        self._frames += 1
        return faces

    async def close(self) -> None:
        if not self.started:
            return
        self.started = False
        await self.backend.end_sequence(self.stream_id)


def jpeg_size(jpeg: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, without decoding it; None if it has none."""
    at = 2  # after the start-of-image marker
    while at + 9 <= len(jpeg) and jpeg[at] == 0xFF:
        marker = jpeg[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
            return int.from_bytes(jpeg[at + 7:at + 9], "big"), int.from_bytes(jpeg[at + 5:at + 7], "big")
        at += 2 + int.from_bytes(jpeg[at + 2:at + 4], "big")
    return None


@functools.lru_cache(maxsize=8)
def black_jpeg(width: int, height: int) -> bytes:
    """A black frame as JPEG: it decodes to zeros exactly (a black image loses nothing)."""
    import cv2

    ok, jpeg = cv2.imencode(".jpg", np.zeros((height, width, 3), np.uint8))
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return jpeg.tobytes()


class _TritonLaneStream(LanedFaceStream):
    """One answer's frames in several Triton sequences at once (``FaceLanes``), with exactly the
    faces one sequence gives (``_TritonFaceStream``).

    Each lane is a thread with a sequence of its own, ``<answer>/<lane>``, on whichever instance
    the batcher gives it. A lane that starts a span first sends a black frame: the
    server's landmarker then follows no face, exactly as a new one (what the in-process lanes do,
    ``FaceLandmarkerRunner.start_over``, 1.7 ms); a new sequence a span would have the server
    build a new landmarker each time (22 ms). The lanes' calls go through this backend's client
    on the event loop, with its deadlines and retries.
    """

    def __init__(self, backend: "TritonBackend", stream_id: str, lanes: int) -> None:
        self.backend = backend
        self.stream_id = stream_id
        self._loop = asyncio.get_running_loop()
        self._open = [False] * lanes  # whether each lane's sequence has started
        # No decoding here: the server decodes the JPEG.
        super().__init__(lanes, backend.settings.vision.face_span_frames, None)

    def _call(self, coroutine):
        """Run ``coroutine`` on the event loop and wait for it (on a lane's thread), no longer than
        its own deadlines and retries allow."""
        config = self.backend.settings.inference
        patience = (config.timeout_s + config.backoff_s * 2 ** config.retries) * (config.retries + 1)
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=patience)

    def _detect(self, lane: int, jpeg: bytes, t_ms: int, start_over: bool) -> RawFaces:
        sequence = f"{self.stream_id}/{lane}"
        if not self._open[lane]:
            self._open[lane] = True
            return self._call(self.backend.detect_frame(sequence, jpeg, t_ms, start=True))
        if start_over:
            self._call(self.backend.start_over(sequence, jpeg, t_ms))
        return self._call(self.backend.detect_frame(sequence, jpeg, t_ms, start=False))

    def _close_lane(self, lane: int) -> None:
        if not self._open[lane] or self._loop.is_closed():
            return
        self._open[lane] = False
        try:
            self._call(self.backend.end_sequence(f"{self.stream_id}/{lane}"))
        except Exception:  # noqa: BLE001 - the loop went away (shutting down): the server drops idle sequences
            log.info("face lane's sequence left to the server's idle timeout")


class TritonBackend(InferenceBackend):
    name = "triton"

    def __init__(self, address: str, settings: PoiseSettings) -> None:
        self.address = address
        self.settings = settings
        self.client: grpcclient.InferenceServerClient | None = None

    def _model(self, need: str) -> str:
        return {FACE: self.settings.inference.face_model, SPEECH: self.settings.inference.speech_model}[need]

    async def start(self, needs: set[str]) -> None:
        config = self.settings.inference
        self.client = grpcclient.InferenceServerClient(url=self.address)
        deadline = asyncio.get_running_loop().time() + config.start_timeout_s
        while True:
            try:
                if await self.client.is_server_ready(client_timeout=config.timeout_s):
                    break
            except InferenceServerException:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise InferenceUnavailable(
                    f"Triton at {self.address} is not ready after {config.start_timeout_s:.0f} s"
                )
            await asyncio.sleep(config.backoff_s)
        for need in sorted(needs):
            name = self._model(need)
            try:
                ready = await self.client.is_model_ready(name, client_timeout=config.timeout_s)
            except InferenceServerException as exc:
                raise InferenceConfigError(f"cannot ask Triton at {self.address} about model {name!r}: {exc.message()}") from exc
            if not ready:
                raise InferenceConfigError(f"model {name!r} is not ready on Triton at {self.address}")
            model_config = await self.client.get_model_config(name, as_json=True, client_timeout=config.timeout_s)
            max_batch = int(model_config["config"].get("max_batch_size", 0))
            if max_batch < config.batch_size:
                raise InferenceConfigError(
                    f"model {name!r} on Triton at {self.address} has max_batch_size {max_batch}, "
                    f"below this client's batch size {config.batch_size}"
                )
        log.info("triton ready", extra={"address": self.address, "models": len(needs)})

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def infer(self, model: str, inputs, outputs: list[str], **sequence):
        config = self.settings.inference
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        delay = config.backoff_s
        for attempt in range(config.retries + 1):
            try:
                with self.timed(model):
                    result = await self.client.infer(
                        model, inputs, outputs=requested, client_timeout=config.timeout_s, **sequence
                    )
                return checked_result(result, model, outputs, in_sequence="sequence_id" in sequence)
            except InferenceServerException as exc:
                message = exc.message() or ""
                status = str(exc.status() or "")
                if "START flag" in message or "sequence" in message.lower() and "not" in message.lower():
                    raise StreamLost(f"Triton lost sequence state for model {model!r}") from exc
                if not any(code in status for code in _RETRYABLE) and "unavailable" not in message.lower():
                    raise
                log.warning("triton call failed", extra={"model": model, "status": status, "attempt": attempt + 1})
                if attempt == config.retries:
                    raise InferenceUnavailable(f"Triton at {self.address} unavailable for {model!r}") from exc
                await asyncio.sleep(delay)
                delay *= 2

    def face_stream(self, stream_id: str) -> FaceStream:
        lanes = self.settings.inference.face_lanes
        return _TritonLaneStream(self, stream_id, lanes) if lanes > 1 else _TritonFaceStream(self, stream_id)

    async def start_over(self, sequence: str, jpeg: bytes, t_ms: int) -> None:
        """Before ``jpeg``: a black frame of its size, which leaves ``sequence``'s landmarker
        following no face, exactly as a new one."""
        if (size := jpeg_size(jpeg)) is not None:
            # The model makes its frame times increasing: the black frame's is only a hint.
            await self.detect_frame(sequence, black_jpeg(*size), t_ms - 1, start=False)

    async def detect_frame(self, sequence: str, jpeg: bytes, t_ms: int, *, start: bool) -> RawFaces:
        """One frame of ``sequence`` (``start``: its first, a fresh landmarker) through the face model."""
        stamp = grpcclient.InferInput("TIMESTAMP_MS", [1, 1], "INT64")
        stamp.set_data_from_numpy(np.array([[t_ms]], dtype=np.int64))
        result = await self.infer(
            self.settings.inference.face_model,
            [_bytes_input("JPEG", jpeg), stamp],
            ["FACE_COUNT", "LANDMARKS", "BLENDSHAPES", "MATRICES"],
            sequence_id=sequence,
            sequence_start=start,
        )
        return faces_from_result(result)

    async def end_sequence(self, sequence: str) -> None:
        """End ``sequence``, freeing its landmarker on the server."""
        stamp = grpcclient.InferInput("TIMESTAMP_MS", [1, 1], "INT64")
        stamp.set_data_from_numpy(np.array([[0]], dtype=np.int64))
        try:
            # An empty frame only ends the sequence.
            await self.infer(
                self.settings.inference.face_model,
                [_bytes_input("JPEG", b""), stamp],
                ["FACE_COUNT"],
                sequence_id=sequence,
                sequence_end=True,
            )
        except (StreamLost, InferenceUnavailable):
            pass  # the server already forgot the sequence, or will when it times out

    async def transcribe(self, samples: np.ndarray, prompt: str | None) -> list[RawSegment]:
        if samples.size == 0:
            return []
        audio = grpcclient.InferInput("AUDIO", [1, int(samples.size)], "FP32")
        audio.set_data_from_numpy(np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1))
        inputs = [audio]
        if prompt:
            inputs.append(_bytes_input("PROMPT", prompt.encode()))
        result = await self.infer(self.settings.inference.speech_model, inputs, ["SEGMENTS"])
        raw = result.as_numpy("SEGMENTS").reshape(-1)[0]
        return [RawSegment.from_json(s) for s in json.loads(raw)]
