"""Peak memory against interview length: streaming, not buffering.

Each run scores in a fresh process (``EmbeddedPoise``, default settings) and reports that
process's peak resident memory plus its workers' (the gateway's fork server and the prosody
worker; the decoding children are short-lived and held to their own limit). Interviews:
one 5-minute answer; twelve of them (a 60-minute interview); with ``--long`` also one
20-minute answer (the longest accepted). Prints and saves bench/results/memory_scaling.json.

    python bench/memory_scaling.py [--long]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import machine, now_utc, save, score_in_child  # noqa: E402
from long_answer import build_long_answer  # noqa: E402

FIVE_MINUTES = 15  # copies of the 19.7 s clip: 295 s
TWENTY_MINUTES = 60  # 1181 s, under the 20-minute limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="also one 20-minute answer")
    args = parser.parse_args()
    five = build_long_answer(FIVE_MINUTES)
    cases = {"5 min (1 answer)": [five]}
    if args.long:
        cases["20 min (1 answer)"] = [build_long_answer(TWENTY_MINUTES)]
    cases["60 min (12 answers of 5 min)"] = [five] * 12
    started = machine()
    runs = {}
    for name, paths in cases.items():
        figures = score_in_child(paths)
        figures["total_peak_rss_mb"] = round(figures["peak_rss_mb"] + figures["workers_peak_rss_mb"], 1)
        runs[name] = figures
        print(f"{name:<30} {figures['duration_s']:>7.0f} media s  peak {figures['total_peak_rss_mb']:>6.0f} MB "
              f"(process {figures['peak_rss_mb']:.0f}, workers {figures['workers_peak_rss_mb']:.0f})  "
              f"{figures['duration_s'] / figures['scoring_wall_s']:.1f}x real time", flush=True)
    base = runs["5 min (1 answer)"]["total_peak_rss_mb"]
    ratio = runs["60 min (12 answers of 5 min)"]["total_peak_rss_mb"] / base
    result = {
        "benchmark": "memory_scaling",
        "when": now_utc(),
        "machine": started,
        "runs": runs,
        "peak_ratio_60_to_5_min": round(ratio, 3),
    }
    if args.long:
        result["peak_ratio_20_min_answer_to_5_min"] = round(runs["20 min (1 answer)"]["total_peak_rss_mb"] / base, 3)
    saved = save("memory_scaling", result)
    print(f"peak memory, 60-minute interview / 5-minute one: {ratio:.2f}x; saved {saved}")


if __name__ == "__main__":
    main()
