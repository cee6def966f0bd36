"""Whole interviews on a GPU machine: media seconds per wall second per GPU, through Triton.

Each interview is the long answer scored by its own embedded process (``harness.py``), all of
them started at once, so the machine's cores are shared the way a worker pool shares them:

- ``local``: every model in process on the CPU (the same machine without its GPU);
- ``triton``: every model through one ``tritonserver`` serving this repository's models with the
  GPU variant of their configs: speech on ``KIND_GPU`` instances (float16, as the GPU image
  serves it), the face model on ``KIND_CPU`` instances (MediaPipe's graph runs on the CPU).

For each: wall seconds from the launch to the last scorecard, media seconds per wall second,
the machine's CPU use (busy cores) and the GPU's mean utilisation and memory while it ran,
Triton's achieved batch per model, and each scorecard's digest and competency scores (float16
decoding on the GPU may choose another word than int8 on the CPU; the scores say whether that
moved anything). ``--kind cpu`` serves speech on CPU instances instead, to try the program on a
machine without a GPU. Prints and saves bench/results/gpu_pipeline.json.

    python bench/gpu_pipeline.py [--interviews 1 16] [--face-instances N] [--speech-instances 4]
                                 [--face-lanes 1 4]

``--face-lanes``: the Triton runs again with each answer in that many sequences at once
(``POISE_INFERENCE__FACE_LANES``), spread over the face model's instances.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from harness import bench_input, gpu_config, gpu_name, machine, now_utc, save, score_in_child  # noqa: E402
from triton_vs_local import triton_batches  # noqa: E402

MODELS = REPO / "deploy" / "triton" / "models"


class Sampler:
    """Busy CPU seconds of the whole machine and the GPU's utilisation, sampled while a run lasts."""

    def __init__(self, period_s: float = 0.25) -> None:
        self.period_s = period_s
        self.gpu_util: list[int] = []
        self.gpu_memory_mib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _busy_s() -> float:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001 - no GPU: the CPU figures still stand
            handle = None
        while not self._stop.wait(self.period_s):
            if handle is not None:
                self.gpu_util.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                used = int(pynvml.nvmlDeviceGetMemoryInfo(handle).used // 2**20)
                self.gpu_memory_mib = max(self.gpu_memory_mib, used)
        if handle is not None:
            pynvml.nvmlShutdown()

    def __enter__(self) -> "Sampler":
        self._busy, self._wall = self._busy_s(), time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.busy_cores = (self._busy_s() - self._busy) / (time.perf_counter() - self._wall)


def interviews_at_once(path: Path, count: int, env: dict[str, str]) -> dict:
    """``count`` embedded processes, each scoring ``path`` as one interview, started together."""
    with Sampler() as sampler, ThreadPoolExecutor(count) as pool:
        started = time.perf_counter()
        runs = list(pool.map(lambda _: score_in_child([path], env), range(count)))
        wall = time.perf_counter() - started
    media_s = sum(run["duration_s"] for run in runs)
    return {
        "interviews": count,
        "media_s": round(media_s, 1),
        "wall_s": round(wall, 3),
        "media_s_per_wall_s": round(media_s / wall, 1),
        "scoring_wall_s": sorted(run["scoring_wall_s"] for run in runs),
        "startup_s_max": max(run["startup_s"] for run in runs),
        "busy_cores": round(sampler.busy_cores, 1),
        "gpu_util_mean_pct": round(sum(sampler.gpu_util) / len(sampler.gpu_util), 1) if sampler.gpu_util else None,
        "gpu_memory_mib": sampler.gpu_memory_mib or None,
        "digests": sorted({run["digest"] for run in runs}),
        "scores": runs[0]["scores"],
        "words": runs[0]["words"],
    }


def repository(work: Path, *, kind: str, speech_instances: int, face_instances: int) -> Path:
    """This repository's models, each with a ``configs/gpu.pbtxt``: speech as the GPU image serves
    it (on CPU instances with ``kind="cpu"``), the face model with ``face_instances`` CPU ones."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    variants = gpu_config()
    models = work / "models"
    shutil.copytree(MODELS, models, ignore=shutil.ignore_patterns("__pycache__", "configs"))
    speech = models / "speech_recognizer"
    if kind == "gpu":
        config = variants.gpu_variant((speech / "config.pbtxt").read_text(),
                                      variants.GPU_MODELS["speech_recognizer"], count=speech_instances)
    else:
        config = text_format.Parse((speech / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        config.instance_group[0].count = speech_instances
    faces = models / "face_landmarker"
    face_config = text_format.Parse((faces / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    face_config.instance_group[0].count = face_instances
    for folder, variant in ((speech, config), (faces, face_config)):
        (folder / "configs").mkdir()
        (folder / "configs" / f"{variants.CONFIG_NAME}.pbtxt").write_text(text_format.MessageToString(variant))
    return models


def main() -> None:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--interviews", type=int, nargs="+", default=[1, 16],
                            help="interviews scored at once, one run per count")
        parser.add_argument("--face-instances", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                            help="KIND_CPU instances of the face model (default half the cores)")
        parser.add_argument("--speech-instances", type=int, default=gpu_config().GPU_INSTANCES["speech_recognizer"])
        parser.add_argument("--kind", choices=["gpu", "cpu"], default="gpu", help="where Triton runs speech")
        parser.add_argument("--skip-local", action="store_true", help="only the Triton runs")
        parser.add_argument("--face-lanes", type=int, nargs="+", default=[1, 4],
                            help="Triton sequences an answer's frames run in at once (POISE_INFERENCE__FACE_LANES), "
                                 "one series of Triton runs per value")
        parser.add_argument("--save-as", default="gpu_pipeline",
                            help="name of the results file under bench/results/ (without .json)")

    args, path = bench_input(__doc__, add_arguments)
    from poise_devstack.triton import TritonServer

    result: dict = {"benchmark": "gpu_pipeline", "when": now_utc(), "machine": machine(),
                    "input": {"file": path.name, "interviews": args.interviews},
                    "triton": {"speech": f"{args.speech_instances} KIND_{args.kind.upper()} instances",
                               "faces": f"{args.face_instances} KIND_CPU instances"}}
    result["machine"]["gpu"] = gpu_name()

    def report(mode: str, run: dict) -> None:
        result.setdefault(mode, {})[str(run["interviews"])] = run
        gpu = f", GPU {run['gpu_util_mean_pct']} % busy, {run['gpu_memory_mib']} MiB" if run["gpu_util_mean_pct"] is not None else ""
        print(f"{mode:<22}{run['interviews']:>3} at once: {run['media_s_per_wall_s']:>6} media s per wall s "
              f"({run['media_s']} s in {run['wall_s']} s), {run['busy_cores']} cores busy{gpu}; "
              f"digests {', '.join(run['digests'])}", flush=True)

    if not args.skip_local:
        for count in args.interviews:
            report("local", interviews_at_once(path, count, {}))

    with tempfile.TemporaryDirectory() as work:
        models = repository(Path(work), kind=args.kind, speech_instances=args.speech_instances,
                            face_instances=args.face_instances)
        with TritonServer(models, startup_timeout=300, extra_args=[f"--model-config-name={gpu_config().CONFIG_NAME}"]) as server:
            env = {"POISE_INFERENCE__URL": f"triton://{server.grpc_url}", "POISE_INFERENCE__TIMEOUT_S": "300",
                   "POISE_INFERENCE__START_TIMEOUT_S": "300"}
            interviews_at_once(path, 1, env)  # the models' first calls load and warm them
            before = triton_batches(server.metrics_text())
            for lanes in args.face_lanes:
                mode = "triton" if lanes == 1 else f"triton, {lanes} face lanes"
                for count in args.interviews:
                    report(mode, interviews_at_once(path, count, {**env, "POISE_INFERENCE__FACE_LANES": str(lanes)}))
            after = triton_batches(server.metrics_text())
        result["triton_achieved_batch"] = {
            model: {"requests": after[model]["requests"] - before[model]["requests"],
                    "executions": after[model]["executions"] - before[model]["executions"]}
            for model in after
        }
        for figures in result["triton_achieved_batch"].values():
            figures["mean_batch"] = round(figures["requests"] / max(1, figures["executions"]), 2)
        print(f"triton achieved batch: {result['triton_achieved_batch']}", flush=True)

    if not args.skip_local:
        for mode in [m for m in result if m.startswith("triton") and m != "triton_achieved_batch"]:
            for count in args.interviews:
                local, remote = result["local"][str(count)], result[mode][str(count)]
                result.setdefault(f"{mode} vs local", {})[str(count)] = round(
                    remote["media_s_per_wall_s"] / local["media_s_per_wall_s"], 2)
    print(f"saved {save(args.save_as, result)}")


if __name__ == "__main__":
    main()
