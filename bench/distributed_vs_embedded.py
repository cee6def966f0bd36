"""Distributed (five processes on Kafka + PostgreSQL) against embedded, same input, same machine.

Prints and saves bench/results/distributed_vs_embedded.json: scoring wall time of each mode
(upload excluded: from the moment the interview is published to the stored scorecard), their
ratio, and the per-message overhead of the distributed mode.

    python bench/distributed_vs_embedded.py [--repeats 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from long_answer import build_long_answer  # noqa: E402

RESULTS = BENCH / "results"


def embedded_wall(path: Path) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as home:
        out = Path(home) / "e2e.json"
        env = {**os.environ, "POISE_HOME": home}
        subprocess.run(
            [sys.executable, str(BENCH / "embedded_throughput.py"), "--child", str(path), "--out", str(out)],
            env=env, check=True,
        )
        figures = json.loads(out.read_text())
    return figures["scoring_wall_s"], figures


def distributed_wall(path: Path, work: Path) -> dict:
    from poise_devstack.kafka import KafkaBroker
    from poise_devstack.postgres import PostgresServer
    from poise_devstack.stack import PoiseStack

    with KafkaBroker() as broker, PostgresServer() as postgres:
        tag = uuid.uuid4().hex[:8]
        stack = PoiseStack(
            bus_url=f"kafka://{broker.bootstrap}?partitions=4&prefix=b{tag}.",
            database_url=postgres.url,
            home=work / "home",
            log_dir=work / "logs",
        )
        with stack:
            stack.start_all()
            key = subprocess.run(
                [sys.executable, "-m", "poise", "keys", "create", "--tenant", "bench",
                 "--scopes", "interviews:write,scores:read", "--db", postgres.url],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
            headers = {"Authorization": f"Bearer {key}"}
            gateway, fusion = stack.url("gateway"), stack.url("fusion")
            body = {"role": "generic", "questions": [{"question_id": "q1", "text": "Tell us about yourself."}]}
            interview = httpx.post(f"{gateway}/v1/interviews", json=body, timeout=30, headers=headers).json()[
                "interview_id"
            ]
            with path.open("rb") as fh:
                httpx.put(
                    f"{gateway}/v1/interviews/{interview}/answers/q1", content=fh, timeout=120, headers=headers
                ).raise_for_status()
            started = time.perf_counter()
            httpx.post(f"{gateway}/v1/interviews/{interview}/complete", timeout=600, headers=headers).raise_for_status()
            published = time.perf_counter()
            scorecard = f"{fusion}/v1/interviews/{interview}/scorecard"
            while httpx.get(scorecard, timeout=10, headers=headers).status_code != 200:
                time.sleep(0.05)
            done = time.perf_counter()
            messages = sum(
                stack.metric(name, f"poise_{name}_messages_published_total") for name in stack.processes
            )
            consumed = sum(
                stack.metric(name, f"poise_{name}_messages_consumed_total") for name in stack.processes
            )
    return {
        "scoring_wall_s": round(done - started, 3),
        "publish_wall_s": round(published - started, 3),
        "messages_published": int(messages),
        "messages_consumed": int(consumed),
    }


def main() -> None:
    from poise_common.native_stderr import filter_native_stderr

    filter_native_stderr()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="copies of the 19.7 s clip (4 = 79 s)")
    args = parser.parse_args()
    path = build_long_answer(args.repeats)
    embedded_s, embedded = embedded_wall(path)
    with tempfile.TemporaryDirectory() as work:
        distributed = distributed_wall(path, Path(work))
    ratio = distributed["scoring_wall_s"] / embedded_s
    overhead_ms = 1000 * (distributed["scoring_wall_s"] - embedded_s) / max(1, distributed["messages_consumed"])
    result = {
        "benchmark": "distributed_vs_embedded",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "input": {"file": path.name, "duration_s": embedded["duration_s"]},
        "embedded": {"scoring_wall_s": embedded_s},
        "distributed": distributed,
        "ratio": round(ratio, 3),
        "overhead_ms_per_message": round(overhead_ms, 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distributed_vs_embedded.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"input: {embedded['duration_s']:.1f} s answer")
    print(f"embedded scoring:    {embedded_s:.2f} s")
    print(f"distributed scoring: {distributed['scoring_wall_s']:.2f} s "
          f"({distributed['messages_consumed']} messages consumed, {distributed['messages_published']} published)")
    print(f"ratio: {ratio:.2f}x embedded; overhead {overhead_ms:.2f} ms per consumed message")
    print(f"saved {RESULTS / 'distributed_vs_embedded.json'}")


if __name__ == "__main__":
    main()
