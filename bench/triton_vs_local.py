"""Inference through Triton against in-process, on this CPU: throughput, latency, batch size.

Faces: every sampled frame of the long real answer, as 1 and as 4 concurrent answer streams
(the way several interviews reach Triton at once). Speech: the answer's audio, 1 and 4 at
once. Prints and saves bench/results/triton_vs_local.json, including Triton's achieved batch
size (requests per model execution, from its own metrics).

    python bench/triton_vs_local.py [--repeats 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from long_answer import build_long_answer  # noqa: E402

RESULTS = BENCH / "results"


def media(path: Path, fps: float):
    import cv2

    from poise_gateway.decode import iter_audio, iter_frames

    frames = [
        (t, cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [int(cv2.IMWRITE_JPEG_QUALITY), 85])[1].tobytes())
        for t, rgb in iter_frames(path, fps, 640)
    ]
    pcm = b"".join(chunk for _, chunk in iter_audio(path, 1.0))
    return frames, np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


async def faces(backend, frames, streams: int) -> dict:
    latencies: list[float] = []

    async def one(n: int) -> None:
        stream = backend.face_stream(f"bench-{n}-{time.time_ns()}")
        for t, jpeg in frames:
            started = time.perf_counter()
            await stream.detect(jpeg, int(t * 1000))
            latencies.append(time.perf_counter() - started)
        await stream.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(streams)))
    wall = time.perf_counter() - started
    return {
        "streams": streams, "frames": len(frames) * streams, "wall_s": round(wall, 3),
        "frames_per_s": round(len(frames) * streams / wall, 1),
        "latency_ms_p50": round(1000 * float(np.percentile(latencies, 50)), 2),
        "latency_ms_p90": round(1000 * float(np.percentile(latencies, 90)), 2),
    }


async def speech(backend, samples, calls: int) -> dict:
    latencies: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        await backend.transcribe(samples, None)
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    wall = time.perf_counter() - started
    return {
        "calls": calls, "wall_s": round(wall, 3),
        "audio_s_per_wall_s": round(calls * samples.size / 16000 / wall, 1),
        "latency_s_p50": round(float(np.percentile(latencies, 50)), 3),
    }


def triton_batches(metrics: str) -> dict:
    """Requests per execution per model: above 1 means the batcher batched across streams."""
    out = {}
    for model in ("face_landmarker", "speech_recognizer"):
        def value(name: str) -> float:
            match = re.search(rf'^{name}{{model="{model}",version="1"}} (\S+)$', metrics, re.M)
            return float(match.group(1)) if match else 0.0

        requests, executions = value("nv_inference_request_success"), value("nv_inference_exec_count")
        out[model] = {"requests": int(requests), "executions": int(executions),
                      "mean_batch": round(requests / executions, 2) if executions else None}
    return out


async def run(settings, frames, samples) -> dict:
    from poise_common.inference.backend import FACE, SPEECH, create_backend

    backend = create_backend(settings)
    await backend.start({FACE, SPEECH})
    try:
        return {
            "faces_1_stream": await faces(backend, frames, 1),
            "faces_4_streams": await faces(backend, frames, 4),
            "speech_1": await speech(backend, samples, 1),
            "speech_4": await speech(backend, samples, 4),
        }
    finally:
        await backend.stop()


def main() -> None:
    from poise_common.native_stderr import filter_native_stderr
    from poise_common.settings import PoiseSettings
    from poise_devstack.triton import TritonServer

    filter_native_stderr()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="copies of the 19.7 s clip (4 = 79 s)")
    parser.add_argument("--fps", type=float, default=10.0)
    args = parser.parse_args()
    path = build_long_answer(args.repeats)
    frames, samples = media(path, args.fps)
    local = asyncio.run(run(PoiseSettings(), frames, samples))
    with TritonServer(REPO / "deploy" / "triton" / "models", models=["face_landmarker", "speech_recognizer"]) as server:
        settings = PoiseSettings(inference={"url": f"triton://{server.grpc_url}"})
        triton = asyncio.run(run(settings, frames, samples))
        batches = triton_batches(server.metrics_text())
    result = {
        "benchmark": "triton_vs_local",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "gpu": None},
        "input": {"file": path.name, "audio_s": round(samples.size / 16000, 1), "frames": len(frames)},
        "local": local,
        "triton": triton,
        "triton_achieved_batch": batches,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "triton_vs_local.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'':<18}{'local':>24}{'triton':>24}")
    for key in ("faces_1_stream", "faces_4_streams"):
        lo, tr = local[key], triton[key]
        print(f"{key:<18}{lo['frames_per_s']:>12} fr/s p50 {lo['latency_ms_p50']:>5} ms"
              f"{tr['frames_per_s']:>9} fr/s p50 {tr['latency_ms_p50']:>5} ms")
    for key in ("speech_1", "speech_4"):
        lo, tr = local[key], triton[key]
        print(f"{key:<18}{lo['audio_s_per_wall_s']:>14} audio s/s{tr['audio_s_per_wall_s']:>15} audio s/s")
    for model, figures in batches.items():
        print(f"triton {model}: {figures['requests']} requests in {figures['executions']} executions "
              f"(mean batch {figures['mean_batch']})")
    print(f"saved {RESULTS / 'triton_vs_local.json'}")


if __name__ == "__main__":
    main()
