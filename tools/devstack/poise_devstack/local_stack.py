"""``make up`` / ``make down``: the whole distributed stack on this machine, left running.

Kafka, PostgreSQL and the five services start on fixed ports on 127.0.0.1 with their data and
logs under ``.cache/stack``; the PIDs go to ``.cache/stack/state.json`` so that ``down`` can
stop exactly those processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from poise_devstack.kafka import KafkaBroker
from poise_devstack.ports import port_accepts
from poise_devstack.postgres import PostgresServer
from poise_devstack.processes import pid_exists
from poise_devstack.stack import SERVICES, PoiseStack

REPO = Path(__file__).resolve().parents[3]
STATE_DIR = REPO / ".cache" / "stack"
STATE = STATE_DIR / "state.json"
DEFAULT_PORTS = {"kafka": 9092, "postgres": 5433, "gateway": 8080, "vision": 8081, "audio": 8082,
                 "nlp": 8083, "fusion": 8084}


def _running_state() -> dict | None:
    if not STATE.exists():
        return None
    state = json.loads(STATE.read_text())
    return state if any(pid_exists(pid) for pid in state["pids"].values()) else None


def up(ports: dict[str, int] | None = None) -> dict:
    """Start everything and return the state written to ``state.json``."""
    if _running_state() is not None:
        raise RuntimeError(f"the stack is already up (see {STATE}); run `make down` first")
    ports = {**DEFAULT_PORTS, **(ports or {})}
    taken = [f"{name} ({port})" for name, port in ports.items() if port_accepts("127.0.0.1", port)]
    if taken:
        raise RuntimeError(f"ports already in use: {', '.join(taken)}")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    broker = KafkaBroker(STATE_DIR / "kafka", port=ports["kafka"], controller_port=ports["kafka"] + 1)
    postgres = PostgresServer(STATE_DIR / "postgres", port=ports["postgres"], database="poise", fsync=True)
    stack = PoiseStack(
        bus_url=f"kafka://127.0.0.1:{ports['kafka']}",
        database_url="",
        home=STATE_DIR / "home",
        log_dir=STATE_DIR / "logs",
        ports={name: ports[name] for name in SERVICES},
    )
    started = []
    try:
        broker.start()
        started.append(broker)
        postgres.start()
        started.append(postgres)
        stack.database_url = postgres.url
        stack.start_all()
    except BaseException:
        stack.stop_all()
        for server in reversed(started):
            server.stop()
        raise
    key = subprocess.run(
        [stack.python, "-m", "poise", "keys", "create", "--tenant", "local",
         "--scopes", "interviews:write,scores:read", "--name", "make up", "--db", postgres.url],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    broker.detach()
    postgres.detach()
    for proc in stack.processes.values():
        proc.detach()
    state = {
        "pids": {"kafka": broker.pid, "postgres": postgres.pid,
                 **{name: proc.pid for name, proc in stack.processes.items()}},
        "urls": {name: stack.url(name) for name in SERVICES},
        "bus_url": stack.bus_url,
        "database_url": postgres.url,
        "logs": str(stack.log_dir),
    }
    STATE.write_text(json.dumps(state, indent=2))
    return {**state, "key": key}  # the key is printed once, never stored in the state file


def down(timeout: float = 60.0) -> list[str]:
    """Stop what ``up`` started, services first; returns the names stopped."""
    if not STATE.exists():
        return []
    state = json.loads(STATE.read_text())
    order = [*SERVICES[::-1], "kafka", "postgres"]
    stopped = []
    for name in order:
        pid = state["pids"].get(name)
        if not pid or not pid_exists(pid):
            continue
        # PostgreSQL's postmaster wants SIGINT alone (fast shutdown); the rest their group.
        if name == "postgres":
            os.kill(pid, signal.SIGINT)
        else:
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_exists(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if pid_exists(pid):
            os.killpg(pid, signal.SIGKILL)
        stopped.append(name)
    STATE.unlink()
    return stopped


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child (started by an earlier `up`): its parent reaps it
