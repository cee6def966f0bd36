"""Distributed (five processes on Kafka + PostgreSQL) against embedded, same input, same machine.

Prints and saves bench/results/distributed_vs_embedded.json: scoring wall time of each mode
(upload excluded: from the moment the interview is completed to the stored scorecard), their
ratio, the per-message overhead of the distributed mode, and the CPU the broker, the database
and each service used. The broker first carries one untimed interview: a broker that has just
started spends a second of CPU compiling its own code (Java's JIT) during its first answer,
which a broker in service has long done; each timed run then starts fresh services, as the
embedded run starts a fresh process.

This machine is shared and its speed drifts by a fifth from one minute to the next, so one
embedded run against one distributed run minutes later says little. The runs come in pairs, an
embedded run then a distributed one, and the figure is the median of the pairs' ratios.

    python bench/distributed_vs_embedded.py [--repeats 4] [--pairs 3]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from distributed_run import score_distributed, servers  # noqa: E402
from harness import bench_input, machine, now_utc, save, score_in_child  # noqa: E402


def _pairs_argument(parser) -> None:
    parser.add_argument("--pairs", type=int, default=3, help="embedded-then-distributed pairs (the median is kept)")


def main() -> None:
    args, path = bench_input(__doc__, _pairs_argument)
    started = machine()
    pairs = []
    with tempfile.TemporaryDirectory() as work, servers() as (broker, postgres):
        warm_up = score_distributed(broker, postgres, path, Path(work))
        for _ in range(args.pairs):
            embedded = score_in_child([path])
            distributed = score_distributed(broker, postgres, path, Path(work))
            pairs.append((distributed["scoring_wall_s"] / embedded["scoring_wall_s"], embedded, distributed))
            print(f"pair {len(pairs)}: embedded {embedded['scoring_wall_s']:.2f} s, distributed "
                  f"{distributed['scoring_wall_s']:.2f} s, {pairs[-1][0]:.2f}x", flush=True)
    # The median pair (the lower of the two middle ones): a pair that ran, not a mean of two.
    ratio, embedded, distributed = sorted(pairs, key=lambda pair: pair[0])[(len(pairs) - 1) // 2]
    embedded_s = embedded["scoring_wall_s"]
    overhead_ms = 1000 * (distributed["scoring_wall_s"] - embedded_s) / max(1, distributed["messages_consumed"])
    result = {
        "benchmark": "distributed_vs_embedded",
        "when": now_utc(),
        "machine": {**started, "load_average_1m_after": machine()["load_average_1m"]},
        "input": {"file": path.name, "duration_s": embedded["duration_s"]},
        "embedded": {"scoring_wall_s": embedded_s, "scoring_cpu_s": embedded["scoring_cpu_s"],
                     "workers_cpu_s": embedded["workers_cpu_s"]},
        "distributed": distributed,
        "distributed_warm_up_run": {"scoring_wall_s": warm_up["scoring_wall_s"], "cpu_s": warm_up["cpu_s"]},
        "ratio": round(ratio, 3),
        "pair_ratios": [round(r, 3) for r, _, _ in pairs],
        "pairs_wall_s": [[e["scoring_wall_s"], d["scoring_wall_s"]] for _, e, d in pairs],
        "overhead_ms_per_message": round(overhead_ms, 3),
    }
    saved = save("distributed_vs_embedded", result)
    print(f"input: {embedded['duration_s']:.1f} s answer; {started['cpu_model']}, load average "
          f"{started['load_average_1m']} at the start")
    print(f"median pair of {len(pairs)}:")
    print(f"embedded scoring:    {embedded_s:.2f} s")
    print(f"distributed scoring: {distributed['scoring_wall_s']:.2f} s "
          f"({distributed['messages_consumed']} messages consumed, {distributed['messages_published']} published)")
    print(f"ratio: {ratio:.2f}x embedded; overhead {overhead_ms:.2f} ms per consumed message")
    print("CPU s by part: " + ", ".join(f"{k} {v}" for k, v in distributed["cpu_s"].items()))
    print(f"saved {saved}")


if __name__ == "__main__":
    main()
