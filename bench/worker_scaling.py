"""Throughput with 1, 2 and 4 worker processes per analyser, and where the shared parts give out.

Four interviews of the long answer are completed at once on the distributed stack (Kafka,
PostgreSQL, the services as processes) with N vision and N audio workers. Throughput is media
seconds scored per wall second. From the CPU that the broker, the database and the analysers
used per media second, each part's ceiling follows: the media seconds per second at which it
would fill one core. Triton's ceiling comes from bench/results/triton_vs_local.json (faces
with 4 streams). How evenly the interviews spread is the busiest worker's share of its
analyser's CPU. Prints and saves bench/results/worker_scaling.json.

    python bench/worker_scaling.py [--repeats 4] [--workers 1 2 4] [--interviews 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from distributed_run import score_distributed, servers  # noqa: E402
from harness import RESULTS, bench_input, machine, now_utc, save  # noqa: E402

SAMPLE_FPS = 10.0


def ceilings(run: dict, media_s: float) -> dict:
    """Media seconds per second at which each part would use one whole core."""
    by_part: dict[str, float] = {}
    for name, cpu in run["cpu_s"].items():
        part = name.split("-")[0]
        by_part[part] = by_part.get(part, 0.0) + cpu
    out = {part: round(media_s / cpu, 1) for part, cpu in by_part.items() if cpu > 0}
    triton = RESULTS / "triton_vs_local.json"
    if triton.exists():
        faces = json.loads(triton.read_text())["triton"]["faces_4_streams"]["frames_per_s"]
        out["triton_faces (measured, CPU build)"] = round(faces / SAMPLE_FPS, 1)
    return out


def busiest_worker_share(cpu_s: dict[str, float], workers: int) -> dict[str, float]:
    """For each analyser, the CPU share of its busiest worker: 1 / workers when the interviews'
    partitions spread evenly, up to 1.0 when they all landed on one worker."""
    shares = {}
    for analyser in ("vision", "audio"):
        own = [cpu_s.get(analyser if n == 1 else f"{analyser}-{n}", 0.0) for n in range(1, workers + 1)]
        if sum(own) > 0:
            shares[analyser] = round(max(own) / sum(own), 2)
    return shares


def main() -> None:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
        parser.add_argument("--interviews", type=int, default=4)

    args, path = bench_input(__doc__, add_arguments)
    from poise_gateway.probe import probe
    from poise_common.settings import PoiseSettings

    duration = probe(path, PoiseSettings().gateway).duration_s
    media_s = duration * args.interviews
    started = machine()
    runs = []
    with tempfile.TemporaryDirectory() as work, servers() as (broker, postgres):
        for workers in args.workers:
            run = score_distributed(broker, postgres, path, Path(work), args.interviews, workers)
            run["media_s_per_wall_s"] = round(media_s / run["scoring_wall_s"], 2)
            run["load_average_1m"] = machine()["load_average_1m"]
            run["busiest_worker_share"] = busiest_worker_share(run["cpu_s"], workers)
            runs.append(run)
            print(f"{workers} worker(s) per analyser: {run['scoring_wall_s']:.1f} s for {media_s:.0f} media s "
                  f"-> {run['media_s_per_wall_s']} media s / wall s; CPU s "
                  + ", ".join(f"{k} {v}" for k, v in run["cpu_s"].items()))
            if workers > 1:
                print(f"  busiest worker's share of its analyser's CPU (even: {1 / workers:.2f}): "
                      + ", ".join(f"{k} {v}" for k, v in run["busiest_worker_share"].items()))
    result = {
        "benchmark": "worker_scaling",
        "when": now_utc(),
        "machine": started,
        "input": {"file": path.name, "duration_s": round(duration, 3), "interviews": args.interviews},
        "runs": runs,
        "ceilings_media_s_per_s_per_core": ceilings(runs[0], media_s),
    }
    saved = save("worker_scaling", result)
    print("ceilings (media s per second that would fill one core): "
          + ", ".join(f"{k} {v}" for k, v in result["ceilings_media_s_per_s_per_core"].items()))
    print(f"saved {saved}")


if __name__ == "__main__":
    main()
