"""Embedded pipeline throughput on a long real answer: media seconds per wall second.

Prints and saves (bench/results/embedded_throughput.json):
- end to end: `EmbeddedPoise` scoring in a fresh process (wall, CPU of the process and of its
  worker processes: the gateway's fork server and decoding children, the prosody worker; peak
  memory), model loading reported apart (a fixed start-up cost); with `--runs N`, N such runs
  `--gap` seconds apart, each one's real-time factor, how many met the 10x bar, and the median
  run's figures (this machine's speed moves by 15-30 % within an hour: one run is one minute's);
- the stages alone on the same input (bench/stage_profile.py), so that the run's overhead can
  be set against the floor, the sum of the model compute:
  * CPU share: CPU seconds spent outside the models / all CPU seconds of the run;
  * wall share: (wall - floor) / wall, below zero when the models overlap on both cores.

    python bench/embedded_throughput.py [--repeats 4] [--runs 1] [--gap 0]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import bench_input, machine, now_utc, save, score_in_child  # noqa: E402
from stage_profile import measure, print_stages  # noqa: E402

BAR = 10.0  # media seconds per wall second: the embedded bar


def _options(parser) -> None:
    parser.add_argument("--runs", type=int, default=1, help="end-to-end runs, each in a fresh process")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between two runs")


def _runs(path: Path, count: int, gap_s: float) -> list[dict]:
    """``count`` end-to-end runs ``gap_s`` apart, each with when it ran and the load before it."""
    runs = []
    for i in range(count):
        if i:
            time.sleep(gap_s)
        when, load = now_utc(), machine()["load_average_1m"]
        e2e = score_in_child([path])
        runs.append({**e2e, "when": when, "load_average_1m": load,
                     "realtime_factor": round(e2e["duration_s"] / e2e["scoring_wall_s"], 2)})
        print(f"run {i + 1}/{count} at {when} (load {load}): {e2e['scoring_wall_s']:.2f} s -> "
              f"{runs[-1]['realtime_factor']}x", flush=True)
    return runs


def main() -> None:
    from poise_common.settings import PoiseSettings

    args, path = bench_input(__doc__, _options)
    if args.runs < 1 or args.gap < 0:
        raise SystemExit("--runs must be at least 1 and --gap at least 0")
    started = machine()
    runs = _runs(path, args.runs, args.gap)
    e2e = sorted(runs, key=lambda run: run["scoring_wall_s"])[(len(runs) - 1) // 2]  # the median run
    stages = measure(path)
    duration = e2e["duration_s"]
    wall = e2e["scoring_wall_s"]
    run_cpu = e2e["scoring_cpu_s"] + e2e["workers_cpu_s"]
    floor = stages["model_cpu_s"]
    result = {
        "benchmark": "embedded_throughput",
        "when": now_utc(),
        "machine": {**started, "load_average_1m_after": machine()["load_average_1m"]},
        "input": {"file": path.name, "duration_s": duration, "width": 640, "height": 360,
                  "sample_fps": PoiseSettings().gateway.sample_fps, **stages["input"]},
        "end_to_end": e2e,
        "realtime_factor": round(duration / wall, 2),
        "runs": [{key: run[key] for key in ("when", "load_average_1m", "scoring_wall_s", "scoring_cpu_s",
                                            "workers_cpu_s", "realtime_factor", "digest")} for run in runs],
        "runs_at_bar": sum(run["realtime_factor"] >= BAR for run in runs),
        "realtime_factor_range": [min(run["realtime_factor"] for run in runs),
                                  max(run["realtime_factor"] for run in runs)],
        "realtime_factor_with_startup": round(duration / (wall + e2e["startup_s"]), 2),
        "run_cpu_s": round(run_cpu, 3),
        "model_floor_cpu_s": floor,
        "overhead_cpu_share": round((run_cpu - floor) / run_cpu, 3),
        "overhead_wall_share": round((wall - floor) / wall, 3),
        "stages": stages["stages"],
        "pipeline_stages_cpu_s": stages["pipeline_cpu_s"],
    }
    saved = save("embedded_throughput", result)
    print(f"input: {duration:.1f} s of 640x360 video; {started['cpu_model']}, load average "
          f"{started['load_average_1m']} at the start")
    if len(runs) > 1:
        low, high = result["realtime_factor_range"]
        print(f"{len(runs)} runs: {low}x to {high}x, {result['runs_at_bar']} at or above {BAR:g}x; the median run:")
    print(f"embedded scoring: {wall:.2f} s wall -> {result['realtime_factor']}x real time "
          f"(with start-up {e2e['startup_s']:.2f} s: {result['realtime_factor_with_startup']}x); "
          f"peak memory {e2e['peak_rss_mb']:.0f} MB (+ {e2e['workers_peak_rss_mb']:.0f} MB in its worker processes)")
    print(f"run CPU {run_cpu:.2f} s (worker processes {e2e['workers_cpu_s']:.2f} s); "
          f"model floor {floor:.2f} s; overhead {100 * result['overhead_cpu_share']:.1f} % of the CPU, "
          f"{100 * result['overhead_wall_share']:.1f} % of the wall")
    print_stages({**stages, "machine": started})
    print(f"scorecard digest {e2e['digest']}; saved {saved}")


if __name__ == "__main__":
    main()
