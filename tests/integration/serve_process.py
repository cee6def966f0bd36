"""`poise serve` as a real subprocess for the API tests, and `poise` commands as an operator runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from poise_devstack.ports import free_port


def poise_cli(*args: str, env: dict) -> str:
    """Run a `poise` command; its stdout, stripped."""
    result = subprocess.run([sys.executable, "-m", "poise", *args], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@dataclass
class Served:
    base: str
    grpc_port: int
    log: Path
    env: dict
    process: subprocess.Popen
    killed: bool = False

    def key(self, tenant: str, scopes: str) -> str:
        return poise_cli("keys", "create", "--tenant", tenant, "--scopes", scopes, env=self.env)

    def kill(self) -> None:
        """SIGKILL the server and every process it started, as a crash or the OOM killer would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.killed = True


@contextmanager
def serve(home: Path, *, grpc: bool = False, timeout: float = 120, settings: dict | None = None) -> Iterator[Served]:
    """Start `poise serve` on free ports with its own POISE_HOME (and ``settings``, POISE_ variables);
    stop it by its PID, and check it exits 0, unless the test killed it.

    Its log goes to a file (not a pipe that nobody reads while the test runs, which would
    block the server once full).
    """
    env = {**os.environ, "POISE_HOME": str(home), **(settings or {})}
    port, grpc_port = free_port(), (free_port() if grpc else 0)
    log = home / "serve.log"
    home.mkdir(parents=True, exist_ok=True)
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "poise", "serve", "--port", str(port), "--grpc-port", str(grpc_port)],
            env=env, stdout=subprocess.DEVNULL, stderr=sink, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    served = Served(base, grpc_port, log, env, process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "poise serve did not become ready"
            time.sleep(0.3)
        yield served
    finally:
        if not served.killed:  # one the test killed has nothing left to stop
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise
    assert served.killed or process.returncode == 0, log.read_text()[-3000:]
