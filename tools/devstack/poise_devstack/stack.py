"""The five Poise services as separate processes, wired to one bus and one database.

Used by the distributed tests (which kill and restart single services) and by
``python -m poise_devstack up``. Each service is ``python -m poise_<name>`` with its settings
in ``POISE_*`` variables; readiness is its ``/readyz``.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from poise_devstack.ports import free_port
from poise_devstack.processes import ManagedProcess

log = logging.getLogger(__name__)

SERVICES = ("gateway", "vision", "audio", "nlp", "fusion")


def _setting_prefix(service: str) -> str:
    return f"POISE_{service.upper()}__"


@dataclass
class PoiseStack:
    """Poise service processes sharing ``bus_url`` and ``database_url``."""

    bus_url: str
    database_url: str
    home: Path
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    key: str | None = None  # an API key for callers of this stack, when one was made

    def _env(self, service: str, port: int) -> dict[str, str]:
        return {
            "POISE_BUS_URL": self.bus_url,
            "POISE_DATABASE_URL": self.database_url,
            "POISE_HOME": str(self.home),
            "POISE_HTTP_HOST": "127.0.0.1",
            f"{_setting_prefix(service)}PORT": str(port),
            **self.env,
        }

    def start(self, instance: str, port: int | None = None, timeout: float = 120.0) -> ManagedProcess:
        """Start ``instance`` ("vision", or "vision-2" for a second vision worker) and wait until ready."""
        service = instance.split("-")[0]
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}")
        port = port or self.ports.get(instance) or free_port()
        self.ports[instance] = port
        proc = self.processes.get(instance)
        if proc is None:
            proc = ManagedProcess(
                [self.python, "-m", f"poise_{service}"],
                log_path=self.log_dir / f"{instance}.log",
                env=self._env(service, port),
                name=instance,
            )
            self.processes[instance] = proc
        proc.start()
        proc.wait_healthy(f"{self.url(instance)}/readyz", timeout=timeout)
        return proc

    def start_all(self, timeout: float = 180.0) -> None:
        for service in SERVICES:
            self.start(service, timeout=timeout)

    def url(self, instance: str) -> str:
        return f"http://127.0.0.1:{self.ports[instance]}"

    def kill(self, instance: str) -> None:
        """SIGKILL, as a crash would."""
        self.processes[instance].kill()

    def terminate(self, instance: str, timeout: float = 60.0) -> int | None:
        return self.processes[instance].terminate(timeout=timeout)

    def stop_all(self) -> None:
        for instance in reversed(list(self.processes)):
            self.processes[instance].terminate(timeout=60.0)

    def metric(self, instance: str, name: str, **labels: str) -> float:
        """Sum of a Prometheus metric's samples on ``instance`` whose labels match ``labels``."""
        text = httpx.get(f"{self.url(instance)}/metrics", timeout=5.0).text
        total = 0.0
        pattern = re.compile(rf"^{re.escape(name)}(?:\{{(?P<labels>[^}}]*)\}})? (?P<value>\S+)$")
        for line in text.splitlines():
            match = pattern.match(line)
            if not match:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels") or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(match.group("value"))
        return total

    def log_tail(self, instance: str, lines: int = 60) -> str:
        return self.processes[instance].log_tail(lines)

    def __enter__(self) -> "PoiseStack":
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()

