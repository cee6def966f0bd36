"""Triton Python-backend model: MediaPipe FaceLandmarker per frame, one landmarker per answer.

Each answer is a Triton sequence whose correlation id is the answer id. VIDEO mode tracks faces
from frame to frame with increasing timestamps, so every sequence keeps its own
``FaceLandmarkerRunner``: created on START (or on the first frame seen without one, e.g. after
a model reload), closed on END, on an empty JPEG, or after the sequence idle time. The "oldest"
sequence batcher hands ``execute`` frames of several answers at once; they run in order.

The raw arrays are exactly what ``FaceLandmarkerRunner.detect`` returns in-process, so the
vision service turns them into behaviour the same way for either backend. A client starts the
faces over within a sequence with a black frame (after which the runner follows no face).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


def _error(message: str, code: str = "INTERNAL") -> pb_utils.InferenceResponse:
    code_value = getattr(pb_utils.TritonError, code, None)
    error = pb_utils.TritonError(message) if code_value is None else pb_utils.TritonError(message, code_value)
    return pb_utils.InferenceResponse(error=error)


class _BadRequest(ValueError):
    """The request itself is wrong; answered with INVALID_ARG."""


def _scalar(request, name: str, required: bool = True):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        if required:
            raise _BadRequest(f"input {name} is missing")
        return None
    array = tensor.as_numpy()
    if array.size != 1:
        # One frame per request: a client batch of frames would mix timestamps of one stream.
        raise _BadRequest(f"input {name} must hold exactly one element per request, got shape {array.shape}")
    return array.reshape(-1)[0]


def _flag(request, name: str) -> bool:
    value = _scalar(request, name, required=False)
    return bool(value) if value is not None else False


class _Stream:
    __slots__ = ("runner", "last_used")

    def __init__(self, runner) -> None:
        self.runner = runner
        self.last_used = time.monotonic()


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        # Imported here: the stub imports this file before any model exists, and MediaPipe costs
        # about a second to load.
        from poise_common.inference.faces import FaceLandmarkerRunner, RawFaces, decode_jpeg_rgb
        from poise_common.settings import default_models_dir

        config = json.loads(args["model_config"])
        params = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
        configured = params.get("model_path", "").strip()
        default_path = default_models_dir() / "face_landmarker.task"
        self._model_path = Path(configured).expanduser() if configured else default_path
        try:
            self._max_faces = int(params.get("max_faces", "2") or "2")
        except ValueError as exc:
            raise pb_utils.TritonModelException(f"parameter max_faces must be an integer: {exc}") from exc
        idle_us = int(config.get("sequence_batching", {}).get("max_sequence_idle_microseconds", 0) or 0)
        # Triton forgets an idle sequence without telling the model: drop its landmarker as well.
        self._idle_s = idle_us / 1e6 if idle_us > 0 else 120.0
        self._runner_cls = FaceLandmarkerRunner
        self._empty = RawFaces.empty
        self._decode = decode_jpeg_rgb
        self._streams: dict[str | int, _Stream] = {}
        # A wrong path or a broken bundle fails the model load, not the first answer.
        probe = FaceLandmarkerRunner(self._model_path, self._max_faces)
        probe.close()
        pb_utils.Logger.log_info(
            f"face_landmarker ready: max_faces={self._max_faces} idle_timeout_s={self._idle_s:g}")

    def execute(self, requests: list) -> list:
        self._drop_idle()
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except _BadRequest as exc:
                responses.append(_error(f"face_landmarker: {exc}", "INVALID_ARG"))
            except Exception as exc:  # noqa: BLE001 - one bad frame must not fail the batch
                responses.append(_error(f"face_landmarker: {type(exc).__name__}: {exc}"))
        return responses

    def finalize(self) -> None:
        for stream in self._streams.values():
            stream.runner.close()
        self._streams.clear()

    # -- internals -------------------------------------------------------------------------------

    def _one(self, request) -> pb_utils.InferenceResponse:
        key = _sequence_key(request.correlation_id())
        start = _flag(request, "START")
        end = _flag(request, "END")
        try:
            jpeg = _scalar(request, "JPEG")
            if not isinstance(jpeg, (bytes, bytearray)):
                jpeg = bytes(jpeg) if jpeg is not None else b""
            if start:
                # A reused answer id starts over: time in VIDEO mode must not run backwards.
                self._close(key)
            if not jpeg:
                end = True  # an empty frame only ends the stream
                return self._response(self._empty())
            stamp = _scalar(request, "TIMESTAMP_MS")
            rgb = self._decode(bytes(jpeg))
            stream = self._streams.get(key)
            if stream is None:
                stream = self._streams[key] = _Stream(self._runner_cls(self._model_path, self._max_faces))
            stream.last_used = time.monotonic()
            return self._response(stream.runner.detect(rgb, int(stamp)))
        except ValueError as exc:
            raise _BadRequest(str(exc)) from exc
        finally:
            if end:
                self._close(key)

    @staticmethod
    def _response(faces) -> pb_utils.InferenceResponse:
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("FACE_COUNT", np.array([[faces.count]], np.int32)),
            pb_utils.Tensor("LANDMARKS", np.ascontiguousarray(faces.landmarks[None], np.float32)),
            pb_utils.Tensor("BLENDSHAPES", np.ascontiguousarray(faces.blendshapes[None], np.float32)),
            pb_utils.Tensor("MATRICES", np.ascontiguousarray(faces.matrices[None], np.float32)),
        ])

    def _close(self, key: str | int) -> None:
        stream = self._streams.pop(key, None)
        if stream is not None:
            stream.runner.close()

    def _drop_idle(self) -> None:
        cutoff = time.monotonic() - self._idle_s
        for key in [k for k, s in self._streams.items() if s.last_used < cutoff]:
            self._close(key)


def _sequence_key(correlation_id) -> str | int:
    # Triton refuses sequence requests without an id; this guards a misconfigured batcher.
    if correlation_id is None or correlation_id in (0, "", b""):
        raise _BadRequest("the request has no correlation id (sequence_id): one answer is one sequence")
    if isinstance(correlation_id, bytes):
        return correlation_id.decode("utf-8", "replace")
    return correlation_id  # a string id, or a number from a client that sent one
