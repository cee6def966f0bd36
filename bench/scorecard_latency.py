"""How long after an interview's last media has been processed its scorecard is ready.

Measured inside the embedded run: a bench consumer on the bus notes when the last feature
message of any answer (vision end, audio features, transcript, NLP features) went by, and when
the interview's scorecard event did. Interviews: one answer, and three answers. Prints and
saves bench/results/scorecard_latency.json.

    python bench/scorecard_latency.py [--repeats 4]
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import bench_input, machine, now_utc, save, score_in_child  # noqa: E402


def main() -> None:
    _, path = bench_input(__doc__)
    started = machine()
    runs = {}
    for answers in (1, 3):
        figures = score_in_child([path] * answers, latency=True)
        runs[f"{answers} answer(s)"] = figures
        print(f"{answers} answer(s): scorecard {figures['scorecard_after_last_media_s']:.3f} s after the last media "
              f"was processed (scoring {figures['scoring_wall_s']:.1f} s wall)")
    result = {"benchmark": "scorecard_latency", "when": now_utc(), "machine": started, "runs": runs,
              "worst_s": max(r["scorecard_after_last_media_s"] for r in runs.values())}
    print(f"saved {save('scorecard_latency', result)}")


if __name__ == "__main__":
    main()
