"""Triton Python-backend model: Whisper speech recognition with word timings.

One request is one utterance (16 kHz mono float32, any length: AUDIO is a ragged input), so the
dynamic batcher may hand ``execute`` several utterances of different lengths; each is transcribed
as its own audio and answered in order. The answer is ``SEGMENTS``: the JSON list of
``RawSegment.to_json()`` that the in-process ``WhisperRunner`` gives, so the audio service repairs
and converts segments the same way for either backend.

Engines, both on the instance's device (CUDA on a KIND_GPU instance, else the CPU): faster-whisper
through ``WhisperRunner``, or whisperx's batched pipeline (pyannote VAD chunks of up to 30 s
decoded together, word timings from a wav2vec2 alignment model) behind the same output. ``auto``
takes whisperx only where it pays and keeps the answer complete: on a GPU instance, with CUDA,
and with ``align_model_dir`` set (without an alignment model whisperx gives no word timings).
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils


def _error(message: str, code: str = "INTERNAL") -> pb_utils.InferenceResponse:
    code_value = getattr(pb_utils.TritonError, code, None)
    error = pb_utils.TritonError(message) if code_value is None else pb_utils.TritonError(message, code_value)
    return pb_utils.InferenceResponse(error=error)


class _BadRequest(ValueError):
    """The request itself is wrong; answered with INVALID_ARG."""


def _text(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    return str(value)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
        model_path = params.get("model_path", "").strip() or None
        compute_type = params.get("compute_type", "").strip() or "int8"
        try:
            threads = int(params.get("threads", "") or 2)
            beam_size = int(params.get("beam_size", "") or 1)
            batch_size = int(params.get("batch_size", "") or 16)
        except ValueError as exc:
            raise pb_utils.TritonModelException(
                f"speech_recognizer: a numeric parameter is not an integer: {exc}") from exc
        engine = (params.get("engine", "") or "auto").strip().lower()
        if engine not in ("auto", "faster-whisper", "whisperx"):
            raise pb_utils.TritonModelException(
                f"speech_recognizer: parameter engine must be auto, faster-whisper or whisperx, "
                f"got {engine!r}")
        on_gpu = args.get("model_instance_kind", "CPU") == "GPU"
        device_index = int(args.get("model_instance_device_id", "0") or 0)
        align_model_dir = params.get("align_model_dir", "").strip() or None

        if _use_whisperx(engine, on_gpu=on_gpu, align_model_dir=align_model_dir):
            from poise_common.inference.speech import resolve_model_path

            self._engine = _WhisperXEngine(
                resolve_model_path(model_path),
                device="cuda" if on_gpu else "cpu",
                device_index=device_index,
                # int8 is the CPU default; on a GPU float16 is whisperx's own default and faster.
                compute_type="float16" if on_gpu and compute_type == "int8" else compute_type,
                beam_size=beam_size,
                batch_size=batch_size,
                threads=threads,
                align_model_dir=align_model_dir,
            )
        else:
            from poise_common.inference.speech import WhisperRunner

            runner = WhisperRunner(
                model_path,
                compute_type=compute_type,
                threads=threads,
                beam_size=beam_size,
                device="cuda" if on_gpu else "cpu",
                # On a GPU windows are decoded together; the CPU keeps decoding one at a time.
                batch_size=batch_size if on_gpu else 1,
            )
            runner.load()  # a missing or broken model fails the load, not the first answer
            self._engine = runner
        pb_utils.Logger.log_info(f"speech_recognizer ready: engine={type(self._engine).__name__}")

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except _BadRequest as exc:
                responses.append(_error(f"speech_recognizer: {exc}", "INVALID_ARG"))
            except Exception as exc:  # noqa: BLE001 - one bad utterance must not fail the batch
                responses.append(_error(f"speech_recognizer: {type(exc).__name__}: {exc}"))
        return responses

    def finalize(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.close()

    def _one(self, request) -> pb_utils.InferenceResponse:
        audio_tensor = pb_utils.get_input_tensor_by_name(request, "AUDIO")
        if audio_tensor is None:
            raise _BadRequest("input AUDIO is missing")
        audio = audio_tensor.as_numpy()
        if audio.ndim == 1:
            audio = audio[None]
        if audio.ndim != 2:
            raise _BadRequest(f"AUDIO must be [batch, samples], got shape {audio.shape}")
        prompts: list[str | None] = [None] * audio.shape[0]
        prompt_tensor = pb_utils.get_input_tensor_by_name(request, "PROMPT")
        if prompt_tensor is not None:
            values = [_text(v) for v in prompt_tensor.as_numpy().reshape(-1)]
            if len(values) == 1:
                values = values * audio.shape[0]
            if len(values) != audio.shape[0]:
                raise _BadRequest(f"PROMPT has {len(values)} rows for {audio.shape[0]} rows of AUDIO")
            # An empty prompt is no prompt: Whisper would otherwise be primed with a lone space.
            prompts = [v if v.strip() else None for v in values]
        # Rows of one request share a length; separate requests keep their own (ragged) lengths.
        out = np.empty((audio.shape[0], 1), dtype=np.object_)
        for row in range(audio.shape[0]):
            segments = self._engine.transcribe(np.ascontiguousarray(audio[row], np.float32), prompts[row])
            out[row, 0] = json.dumps([s.to_json() for s in segments]).encode("utf-8")
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("SEGMENTS", out)])


def _use_whisperx(engine: str, *, on_gpu: bool, align_model_dir: str | None) -> bool:
    """Whether the ``engine`` parameter, on this instance, means whisperx."""
    if engine != "auto":
        return engine == "whisperx"
    # Without an alignment model whisperx's segments carry no words, and the audio service's
    # features and evidence are built from words: auto keeps faster-whisper then (it batches
    # windows on a GPU too). On a CPU instance whisperx is slower than faster-whisper.
    return on_gpu and align_model_dir is not None and _whisperx_usable()


def _whisperx_usable() -> bool:
    import importlib.util

    if importlib.util.find_spec("whisperx") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken torch install means: not usable
        return False


def _vad_checkpoint_globals() -> list:
    """What whisperx's bundled pyannote VAD checkpoint pickles besides tensors.

    torch 2.6 loads checkpoints with ``weights_only=True``, which refuses these; they are allowed
    for that one load only (the file comes with the hash-pinned whisperx wheel).
    """
    import collections
    import typing

    import torch
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.listconfig import ListConfig
    from omegaconf.nodes import AnyNode
    from pyannote.audio.core.model import Introspection
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    return [AnyNode, ContainerMetadata, ListConfig, Metadata, Introspection, Problem, Resolution,
            Specifications, torch.torch_version.TorchVersion, collections.defaultdict, typing.Any,
            dict, int, list]


class _WhisperXEngine:
    """whisperx's batched faster-whisper pipeline, answering like ``WhisperRunner``.

    Runs on ``device`` ("cuda": the GPU ``device_index``; "cpu"). Word timings need a
    pre-provisioned wav2vec2 alignment model (``align_model_dir``); without one the segments
    carry no words. Nothing is fetched from a model hub: the Whisper folder is local and the
    pyannote VAD weights come with whisperx.
    """

    def __init__(
        self,
        model_path,
        *,
        device: str,
        device_index: int,
        compute_type: str,
        beam_size: int,
        batch_size: int,
        threads: int,
        align_model_dir: str | None,
    ) -> None:
        import torch
        import whisperx

        if device not in ("cuda", "cpu"):
            raise ValueError(f"device must be cuda or cpu, got {device!r}")
        self._wx = whisperx
        self._batch_size = batch_size
        if device == "cuda":
            # whisperx puts its VAD on torch.device("cuda"), the current GPU: make it this one.
            torch.cuda.set_device(device_index)
            self._torch_device = f"cuda:{device_index}"
        else:
            # The VAD and alignment models run in torch; keep them to the instance's threads.
            torch.set_num_threads(threads)
            self._torch_device = "cpu"
        with torch.serialization.safe_globals(_vad_checkpoint_globals()):
            self._pipeline = whisperx.load_model(
                str(model_path),
                device,
                device_index=device_index,
                compute_type=compute_type,
                language="en",
                # Same decoding choices as WhisperRunner: greedy by default, windows independent.
                asr_options={"beam_size": beam_size, "best_of": beam_size,
                             "condition_on_previous_text": False},
                # whisperx bundles its pyannote VAD weights; its Silero option would fetch from a hub.
                vad_method="pyannote",
                local_files_only=True,
                threads=threads,
            )
        self._align = None
        if align_model_dir:
            self._align = whisperx.load_align_model(
                language_code="en", device=self._torch_device, model_dir=align_model_dir)

    def transcribe(self, samples: np.ndarray, prompt: str | None = None) -> list:
        import dataclasses

        from poise_common.inference.speech import RawSegment, RawWord

        if samples.size == 0:
            return []
        options = self._pipeline.options
        # The prompt is part of the pipeline's options; execute() runs one request at a time.
        if dataclasses.is_dataclass(options):
            self._pipeline.options = dataclasses.replace(options, initial_prompt=prompt)
        else:
            self._pipeline.options = options._replace(initial_prompt=prompt)
        try:
            result = self._pipeline.transcribe(samples, batch_size=self._batch_size, language="en")
        finally:
            self._pipeline.options = options
        segments = result.get("segments", [])
        if self._align is not None and segments:
            model, metadata = self._align
            segments = self._wx.align(segments, model, metadata, samples, self._torch_device,
                                      return_char_alignments=False).get("segments", [])
        out = []
        for seg in segments:
            words = []
            last = float(seg["start"])
            for w in seg.get("words", []) or []:
                # wav2vec2 cannot place some tokens (digits, symbols): they sit at the previous end.
                start = float(w.get("start", last))
                end = float(w.get("end", start))
                score = w.get("score")
                # faster-whisper words carry their leading space; keep the two engines alike.
                words.append(RawWord(" " + str(w.get("word", "")).strip(), start, end,
                                     None if score is None else float(score)))
                last = end
            out.append(RawSegment(text=str(seg.get("text", "")), start=float(seg["start"]),
                                  end=float(seg["end"]), words=words))
        return out

    def close(self) -> None:
        self._pipeline = None
        self._align = None
