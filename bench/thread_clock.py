"""Each thread's CPU in this process over a block, and the machine's busy CPUs through it.

``time.process_time`` says what a whole run cost; this says which thread spent it. Linux keeps
every thread's CPU under ``/proc/self/task``, but a thread's entry goes when the thread ends (the
face lanes end with their answer), so a sampler thread reads them all every ``every`` seconds and
keeps each thread's last reading. What a thread spent after its last reading before it ended is
counted under "ended between readings" (the process's CPU less every thread's), so nothing is
lost from the total. Python threads are named by their ``threading`` names with the trailing
number dropped (``poise-face_0`` and ``poise-face_1`` are "poise-face"); threads that native
libraries start have no Python name and count as "native threads".
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

TASKS = Path("/proc/self/task")
SAMPLER = "thread-clock"
_NUMBERED = re.compile(r"[_-]?\d+$")


def stat_cpu_s(stat: Path, reaped_children: bool = False) -> float | None:
    """CPU seconds (user + system) in a /proc ``stat`` file: a process's or a thread's, with the
    children it reaped where ``reaped_children``; None when it has ended."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:  # ended meanwhile
        return None
    last = 15 if reaped_children else 13  # utime, stime (, cutime, cstime)
    return sum(int(v) for v in fields[11:last]) / os.sysconf("SC_CLK_TCK")


def _thread_cpu_s() -> dict[int, float]:
    """CPU seconds of every live thread of this process, by native thread id."""
    from poise_common.processes import threads

    readings = {tid: stat_cpu_s(TASKS / str(tid) / "stat") for tid in threads(os.getpid())}
    return {tid: seconds for tid, seconds in readings.items() if seconds is not None}


def _machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle and waiting for I/O
    return sum(values) - idle, sum(values)


def group_of(name: str | None) -> str:
    if name is None:
        return "native threads"
    if name == SAMPLER:
        return "this clock's sampler"
    return _NUMBERED.sub("", name) or name


class ThreadClock:
    """``with ThreadClock() as clock: ...`` then ``clock.by_group()``, ``clock.busy_cpus``."""

    def __init__(self, every: float = 0.1) -> None:
        if not TASKS.is_dir():
            raise RuntimeError("per-thread CPU needs Linux's /proc/self/task")
        self.every = every
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wall0 = self._cpu0 = 0.0
        self.process_cpu_s = 0.0
        self.wall_s = 0.0
        # (seconds since the start, CPUs busy over the reading before): the whole machine's.
        self.busy_cpus: list[tuple[float, float]] = []

    def _read(self) -> None:
        for tid, seconds in _thread_cpu_s().items():
            self._last[tid] = seconds
        for thread in threading.enumerate():
            if thread.native_id is not None:
                self._names.setdefault(thread.native_id, thread.name)

    def _sample(self) -> None:
        cpus = os.cpu_count() or 1
        busy, total = _machine_busy()
        while not self._stop.wait(self.every):
            self._read()
            now_busy, now_total = _machine_busy()
            if now_total > total:
                self.busy_cpus.append((round(time.perf_counter() - self._wall0, 2),
                                       round(cpus * (now_busy - busy) / (now_total - total), 2)))
            busy, total = now_busy, now_total

    def __enter__(self) -> ThreadClock:
        self._read()
        self._start = dict(self._last)
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
        self._thread = threading.Thread(target=self._sample, name=SAMPLER, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._read()
        self.wall_s = time.perf_counter() - self._wall0
        self.process_cpu_s = time.process_time() - self._cpu0

    def by_thread(self) -> dict[int, tuple[str, float]]:
        """Native thread id -> (name, CPU seconds spent during the block)."""
        return {tid: (group_of(self._names.get(tid)), seconds - self._start.get(tid, 0.0))
                for tid, seconds in self._last.items()}

    def by_group(self) -> dict[str, float]:
        """CPU seconds by thread group, largest first, with "ended between readings" the rest."""
        groups: dict[str, float] = {}
        for name, seconds in self.by_thread().values():
            groups[name] = groups.get(name, 0.0) + seconds
        groups["ended between readings"] = self.process_cpu_s - sum(groups.values())
        return {name: round(seconds, 2) for name, seconds in sorted(groups.items(), key=lambda kv: -kv[1])}

    def busy_summary(self) -> dict:
        """The machine's mean busy CPUs over the block, and over its first and last second."""
        def mean(rows):
            return round(sum(b for _, b in rows) / len(rows), 2) if rows else None

        end = self.wall_s
        return {
            "mean": mean(self.busy_cpus),
            "first_1_s": mean([r for r in self.busy_cpus if r[0] <= 1.0]),
            "last_1_s": mean([r for r in self.busy_cpus if r[0] >= end - 1.0]),
        }
