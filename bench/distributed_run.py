"""Score interviews on the distributed stack: the five services as processes on a real Kafka
broker and PostgreSQL (started on 127.0.0.1 by ``poise_devstack``), with the CPU each part used.

Shared by distributed_vs_embedded.py and worker_scaling.py; not a benchmark by itself.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from harness import tree_cpu_s


@contextmanager
def servers():
    """One Kafka broker and one PostgreSQL server for every run of a benchmark."""
    from poise_devstack.kafka import KafkaBroker
    from poise_devstack.postgres import PostgresServer

    with KafkaBroker() as broker, PostgresServer() as postgres:
        yield broker, postgres


def score_distributed(broker, postgres, path: Path, work: Path, interviews: int = 1, workers: int = 1) -> dict:
    """Score ``interviews`` interviews of one answer (``path``) at once, with ``workers`` vision and
    audio processes each. Timed from the first ``complete`` call to the last stored scorecard;
    uploads come before and are not timed."""
    from poise_devstack.stack import PoiseStack

    tag = uuid.uuid4().hex[:8]
    database = postgres.create_database(f"bench_{tag}")
    stack = PoiseStack(
        bus_url=f"kafka://{broker.bootstrap}?partitions=4&prefix=b{tag}.",
        database_url=database, home=work / tag / "home", log_dir=work / tag / "logs",
    )
    with stack:
        stack.start_all()
        for n in range(2, workers + 1):
            stack.start(f"vision-{n}")
            stack.start(f"audio-{n}")
        key = subprocess.run(
            [sys.executable, "-m", "poise", "keys", "create", "--tenant", "bench",
             "--scopes", "interviews:write,scores:read", "--db", database],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        headers = {"Authorization": f"Bearer {key}"}
        gateway, fusion = stack.url("gateway"), stack.url("fusion")
        ids = []
        for _ in range(interviews):
            body = {"role": "generic", "questions": [{"question_id": "q1", "text": "Tell us about yourself."}]}
            interview = httpx.post(f"{gateway}/v1/interviews", json=body, timeout=30, headers=headers).json()
            with path.open("rb") as fh:
                httpx.put(f"{gateway}/v1/interviews/{interview['interview_id']}/answers/q1", content=fh,
                          timeout=120, headers=headers).raise_for_status()
            ids.append(interview["interview_id"])
        parts = {"kafka": broker.pid, "postgres": postgres.pid,
                 **{name: proc.pid for name, proc in stack.processes.items()}}
        cpu_before = {name: tree_cpu_s(pid) for name, pid in parts.items()}
        started = time.perf_counter()

        def complete(interview_id: str) -> None:
            httpx.post(f"{gateway}/v1/interviews/{interview_id}/complete", timeout=900,
                       headers=headers).raise_for_status()

        with ThreadPoolExecutor(interviews) as pool:
            list(pool.map(complete, ids))
        published = time.perf_counter()
        for interview_id in ids:
            while httpx.get(f"{fusion}/v1/interviews/{interview_id}/scorecard", timeout=10,
                            headers=headers).status_code != 200:
                time.sleep(0.05)
        done = time.perf_counter()
        cpu = {name: round(tree_cpu_s(pid) - cpu_before[name], 2) for name, pid in parts.items()}
        consumed = sum(stack.metric(name, f"poise_{name.split('-')[0]}_messages_consumed_total")
                       for name in stack.processes)
        published_count = sum(stack.metric(name, f"poise_{name.split('-')[0]}_messages_published_total")
                              for name in stack.processes)
    return {
        "interviews": interviews,
        "workers_per_analyser": workers,
        "scoring_wall_s": round(done - started, 3),
        "publish_wall_s": round(published - started, 3),
        "messages_published": int(published_count),
        "messages_consumed": int(consumed),
        "cpu_s": cpu,
    }
