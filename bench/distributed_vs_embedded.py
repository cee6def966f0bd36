"""Distributed (five processes on Kafka + PostgreSQL) against embedded, same input, same machine.

Prints and saves bench/results/distributed_vs_embedded.json: scoring wall time of each mode
(upload excluded: from the moment the interview is completed to the stored scorecard), their
ratio, the per-message overhead of the distributed mode, and the CPU the broker, the database
and each service used. The broker first carries one untimed interview: a broker that has just
started spends a second of CPU compiling its own code (Java's JIT) during its first answer,
which a broker in service has long done; the timed run then starts fresh services, as the
embedded run starts a fresh process.

    python bench/distributed_vs_embedded.py [--repeats 4]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from distributed_run import score_distributed, servers  # noqa: E402
from harness import bench_input, machine, now_utc, save, score_in_child  # noqa: E402


def main() -> None:
    _, path = bench_input(__doc__)
    started = machine()
    embedded = score_in_child([path])
    with tempfile.TemporaryDirectory() as work, servers() as (broker, postgres):
        warm_up = score_distributed(broker, postgres, path, Path(work))
        distributed = score_distributed(broker, postgres, path, Path(work))
    embedded_s = embedded["scoring_wall_s"]
    ratio = distributed["scoring_wall_s"] / embedded_s
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
        "overhead_ms_per_message": round(overhead_ms, 3),
    }
    saved = save("distributed_vs_embedded", result)
    print(f"input: {embedded['duration_s']:.1f} s answer; load average {started['load_average_1m']} at the start")
    print(f"embedded scoring:    {embedded_s:.2f} s")
    print(f"distributed scoring: {distributed['scoring_wall_s']:.2f} s "
          f"({distributed['messages_consumed']} messages consumed, {distributed['messages_published']} published)")
    print(f"ratio: {ratio:.2f}x embedded; overhead {overhead_ms:.2f} ms per consumed message")
    print("CPU s by part: " + ", ".join(f"{k} {v}" for k, v in distributed["cpu_s"].items()))
    print(f"saved {saved}")


if __name__ == "__main__":
    main()
