"""Where the embedded run's CPU goes, thread by thread, and what its face lanes cost alone.

Each pair is two fresh processes, one after the other: the long answer scored by ``EmbeddedPoise``
with every thread's CPU read through the run (``thread_clock.ThreadClock``: the face lanes, JPEG
decoding, speech recognition, the event loop, native threads, ...), its worker processes' CPU
(decoding, JPEG encoding, prosody) and the machine's busy CPUs; then the same answer's frames, as
the JPEGs the gateway makes, through the face lanes alone (as ``face_lanes.py`` does, at the
default lane count). The lanes' CPU in the run against alone says whether sharing the process
and the machine with the rest of the pipeline costs the face model anything; the busy CPUs say
whether the run leaves CPU unused. Pairs interleave because the machine's speed drifts.
Prints and saves bench/results/run_threads.json.

    python bench/run_threads.py [--repeats 4] [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import bench_input, machine, now_utc, save, score_in_child  # noqa: E402

LANES = "poise-face"


def _pairs(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least one pair, not {value}")
    return value


def _arguments(parser) -> None:
    parser.add_argument("--pairs", type=_pairs, default=3, help="run-then-lanes-alone pairs (default: %(default)s)")


def lanes_alone(path: Path) -> dict:
    """The answer's frames through the default number of face lanes in this process: each thread
    group's CPU while they pass."""
    from face_lanes import answer_jpegs, through_lanes
    from poise_common.inference.local import LocalBackend
    from poise_common.settings import PoiseSettings
    from thread_clock import ThreadClock

    frames = answer_jpegs(path)
    lanes = LocalBackend(PoiseSettings()).face_lanes
    clock = ThreadClock()
    figures, _faces = through_lanes(frames, lanes, watch=lambda: clock)
    return {"lanes": lanes, "frames": len(frames), **figures, "threads_cpu_s": clock.by_group()}


def lanes_alone_in_child(path: Path) -> dict:
    with tempfile.TemporaryDirectory() as home:
        out = Path(home) / "lanes.json"
        subprocess.run([sys.executable, __file__, "--lanes-alone", str(path), "--out", str(out)], check=True)
        return json.loads(out.read_text())


def _print_pair(index: int, run: dict, alone: dict, ratio: float) -> None:
    busy = run["busy_cpus"]
    print(f"pair {index}: run {run['scoring_wall_s']:.2f} s wall, {run['scoring_cpu_s']:.2f} CPU s in process "
          f"+ {run['workers_cpu_s']:.2f} in worker processes; busy CPUs {busy['mean']} "
          f"(first second {busy['first_1_s']}, last {busy['last_1_s']})")
    print("  run's threads (CPU s): " + ", ".join(f"{name} {cpu:.2f}" for name, cpu in run["threads_cpu_s"].items()))
    print(f"  face lanes: {run['threads_cpu_s'].get(LANES, 0.0):.2f} CPU s in the run, "
          f"{alone['threads_cpu_s'].get(LANES, 0.0):.2f} alone ({alone['lanes']} lanes, {alone['wall_s']:.2f} s wall)"
          f" -> x{ratio:.2f}")


def main() -> None:
    if "--lanes-alone" in sys.argv:
        # The child that lanes_alone_in_child starts.
        from poise_common.native_stderr import filter_native_stderr

        filter_native_stderr()
        parser = argparse.ArgumentParser()
        parser.add_argument("--lanes-alone", type=Path, required=True)
        parser.add_argument("--out", type=Path, required=True)
        child = parser.parse_args()
        child.out.write_text(json.dumps(lanes_alone(child.lanes_alone)))
        return
    args, path = bench_input(__doc__, _arguments)
    started = machine()
    print(f"input: {path.name}; {started['cpu_model']}, load average {started['load_average_1m']} at the start")
    pairs = []
    for index in range(1, args.pairs + 1):
        run = score_in_child([path], threads=True)
        alone = lanes_alone_in_child(path)
        ratio = run["threads_cpu_s"].get(LANES, 0.0) / max(alone["threads_cpu_s"].get(LANES, 0.0), 1e-9)
        _print_pair(index, run, alone, ratio)
        pairs.append({"run": run, "lanes_alone": alone, "lanes_in_run_over_alone": round(ratio, 3)})
    median = statistics.median(p["lanes_in_run_over_alone"] for p in pairs)
    print(f"face lanes in the run against alone: x{median:.2f} at the median of {len(pairs)} pairs")
    result = {
        "benchmark": "run_threads", "when": now_utc(), "machine": started,
        "input": {"file": path.name, "duration_s": pairs[0]["run"]["duration_s"]},
        "pairs": pairs, "lanes_in_run_over_alone_median": median,
    }
    result["machine"]["load_average_1m_after"] = machine()["load_average_1m"]
    print(f"saved {save('run_threads', result)}")


if __name__ == "__main__":
    main()
