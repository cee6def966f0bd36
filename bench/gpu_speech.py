"""Speech recognition on a GPU: in process and through Triton's GPU instance, against the CPU.

The bundled sample's 19.7 s of speech, tiled to ``--seconds`` (a long answer) and shifted per
utterance, is transcribed

- on the CPU in process (int8, every core): the figure a CPU-only worker gets on this machine;
- on the GPU in process (float16, ``WhisperRunner(device="cuda")``), one window after the other
  and batched (``batch_size=16``: the utterance's windows decoded together);
- through ``tritonserver`` loading ``deploy/triton/models/speech_recognizer`` with the GPU
  variant of its config (``docker/gpu/gpu_config.py``: ``KIND_GPU`` instances, float16, batched), the
  way the GPU image serves it, by 1 and by 8 concurrent callers through the ``triton`` inference
  backend, with the batch Triton achieved (requests per model execution, from its metrics).

Prints and saves bench/results/gpu_speech.json: audio seconds per wall second for each, the GPU's
memory in use, and the word error rate of the GPU transcript against the CPU one (float16 against
int8 decoding: they should agree on nearly every word).

    python bench/gpu_speech.py [--model-path DIR] [--utterances 16] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from poise_devstack.speech_checks import SAMPLE_RATE as RATE
from poise_devstack.speech_checks import word_error_rate

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from harness import gpu_config, gpu_name  # noqa: E402
from triton_vs_local import triton_batches  # noqa: E402

RESULTS = BENCH / "results"
SAMPLE = REPO / "examples" / "sample_interview.mp4"


def utterances(count: int, seconds: float) -> list[np.ndarray]:
    from faster_whisper import decode_audio

    speech = decode_audio(str(SAMPLE), sampling_rate=RATE)
    tiled = np.tile(speech, int(np.ceil(seconds * RATE / speech.size)))[: int(seconds * RATE)]
    # Shifted by 1.3 s each, so no two utterances are the same audio.
    return [np.ascontiguousarray(np.roll(tiled, -int(1.3 * RATE * n)), np.float32) for n in range(count)]


def text(segments) -> str:
    return " ".join(s.text for s in segments)


def gpu_memory_mib() -> int | None:
    try:
        import pynvml
    except ImportError:
        return None
    pynvml.nvmlInit()
    try:
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used // 2**20)
    finally:
        pynvml.nvmlShutdown()


def in_process(model_path: str | None, audio: list[np.ndarray], *, device: str, compute_type: str,
               threads: int, batch_size: int = 1) -> tuple[dict, list]:
    from poise_common.inference.speech import WhisperRunner

    runner = WhisperRunner(model_path, compute_type=compute_type, threads=threads, device=device,
                           batch_size=batch_size)
    runner.transcribe(audio[0][: 5 * RATE])  # loads the model and warms the kernels
    started = time.perf_counter()
    first = [runner.transcribe(samples) for samples in audio]
    wall = time.perf_counter() - started
    figures = {
        "device": device, "compute_type": compute_type, "threads": threads, "batch_size": batch_size,
        "utterances": len(audio),
        "audio_s": round(sum(a.size for a in audio) / RATE, 1), "wall_s": round(wall, 3),
        "audio_s_per_wall_s": round(sum(a.size for a in audio) / RATE / wall, 1),
        "gpu_memory_mib": gpu_memory_mib() if device == "cuda" else None,
    }
    runner.close()
    return figures, first[0]


def gpu_repository(work: Path, model_path: str | None, instances: int) -> Path:
    """The speech model's folder with the GPU image's config variant, pointed at ``model_path``."""
    variants = gpu_config()
    from google.protobuf import text_format

    models = work / "models"
    shutil.copytree(REPO / "deploy" / "triton" / "models" / "speech_recognizer", models / "speech_recognizer",
                    ignore=shutil.ignore_patterns("__pycache__"))
    parameters = dict(variants.GPU_MODELS["speech_recognizer"], model_path=model_path or "")
    config = variants.gpu_variant((models / "speech_recognizer" / "config.pbtxt").read_text(), parameters,
                                    count=instances)
    target = models / "speech_recognizer" / "configs" / f"{variants.CONFIG_NAME}.pbtxt"
    target.parent.mkdir()
    target.write_text(text_format.MessageToString(config))
    return models


async def through_triton(url: str, audio: list[np.ndarray], callers: int) -> dict:
    from poise_common.inference.backend import SPEECH, create_backend
    from poise_common.settings import PoiseSettings

    backend = create_backend(PoiseSettings(inference={"url": url, "timeout_s": 300}))
    await backend.start({SPEECH})
    try:
        await backend.transcribe(audio[0][: 5 * RATE], None)  # warm
        queue = list(audio)
        latencies: list[float] = []

        async def caller() -> None:
            while queue:
                samples = queue.pop()
                started = time.perf_counter()
                await backend.transcribe(samples, None)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        wall = time.perf_counter() - started
    finally:
        await backend.stop()
    return {
        "callers": callers, "utterances": len(audio), "wall_s": round(wall, 3),
        "audio_s_per_wall_s": round(sum(a.size for a in audio) / RATE / wall, 1),
        "latency_s_p50": round(float(np.percentile(latencies, 50)), 3),
        "latency_s_p90": round(float(np.percentile(latencies, 90)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", help="CTranslate2 Whisper folder (default: the bundled tiny.en)")
    parser.add_argument("--utterances", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each utterance")
    parser.add_argument("--cpu-utterances", type=int, default=4, help="how many of them the CPU run takes")
    parser.add_argument("--batch-size", type=int, default=16, help="windows decoded together (batched runs)")
    parser.add_argument("--instances", type=int, default=4, help="GPU instances of the second Triton run")
    parser.add_argument("--skip-triton", action="store_true")
    args = parser.parse_args()

    audio = utterances(args.utterances, args.seconds)
    result: dict = {"benchmark": "gpu_speech", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "machine": {"cpus": os.cpu_count()}, "input": {"utterances": len(audio), "seconds": args.seconds}}
    result["machine"]["gpu"] = gpu_name()

    result["cpu"], cpu_words = in_process(args.model_path, audio[: args.cpu_utterances], device="cpu",
                                          compute_type="int8", threads=os.cpu_count() or 1)
    print(f"cpu int8 {os.cpu_count()} threads: {result['cpu']['audio_s_per_wall_s']} audio s per wall s", flush=True)
    result["gpu"], gpu_words = in_process(args.model_path, audio, device="cuda", compute_type="float16", threads=4)
    result["gpu_vs_cpu_wer"] = round(word_error_rate(text(cpu_words), text(gpu_words)), 4)
    print(f"gpu float16 in process: {result['gpu']['audio_s_per_wall_s']} audio s per wall s, "
          f"{result['gpu']['gpu_memory_mib']} MiB in use; WER against the CPU: {result['gpu_vs_cpu_wer']}", flush=True)
    result["gpu_batched"], batched_words = in_process(args.model_path, audio, device="cuda", compute_type="float16",
                                                      threads=4, batch_size=args.batch_size)
    result["gpu_batched_vs_cpu_wer"] = round(word_error_rate(text(cpu_words), text(batched_words)), 4)
    print(f"gpu float16 batched {args.batch_size} in process: {result['gpu_batched']['audio_s_per_wall_s']} audio s "
          f"per wall s; WER against the CPU: {result['gpu_batched_vs_cpu_wer']}", flush=True)

    if not args.skip_triton:
        from poise_devstack.triton import TritonServer

        with tempfile.TemporaryDirectory() as work:
            # One instance per GPU (the image's default), then several: each instance is its own
            # stub process, so the CPU work around the GPU (features, VAD, timings) overlaps.
            for instances, callers in ((1, 1), (1, 8), (args.instances, 8)):
                key = f"triton_gpu_{instances}_instances_{callers}_callers"
                models = gpu_repository(Path(work) / key, args.model_path, instances)
                with TritonServer(models, models=["speech_recognizer"], startup_timeout=300,
                                  extra_args=["--model-config-name=gpu"]) as server:
                    result[key] = asyncio.run(through_triton(f"triton://{server.grpc_url}", audio, callers))
                    result[key]["achieved_batch"] = triton_batches(server.metrics_text())["speech_recognizer"]
                    result[key]["gpu_memory_mib"] = gpu_memory_mib()
                    log = server.log_path.read_text(errors="replace")
                    result[key]["engine"] = next((line.split("engine=")[-1].strip('" ') for line in log.splitlines()
                                                  if "speech_recognizer ready" in line), None)
                print(f"{key}: {result[key]['audio_s_per_wall_s']} audio s per wall s, p50 "
                      f"{result[key]['latency_s_p50']} s per {args.seconds:.0f} s utterance, "
                      f"batch {result[key]['achieved_batch']['mean_batch']}, engine {result[key]['engine']}", flush=True)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gpu_speech.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {RESULTS / 'gpu_speech.json'}")


if __name__ == "__main__":
    main()
