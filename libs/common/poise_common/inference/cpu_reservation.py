"""A CPU of its own for the face model while it is the only one running.

An answer's scoring waits for its frames to go through the face model one after another (one
tracker per answer, frames in order): that is the critical path. Everything else in the process
(the event loop, JPEG decoding, speech recognition) and its worker processes (decoding, prosody)
has slack. Lower priority alone did not keep that work off the model: MediaPipe hands every
frame between three threads of its own, and each hand-off could land on a CPU busy with other
work and wait for it. So while exactly one face stream is open, the stream's model thread (where the
face found and followed outside MediaPipe's graph runs), and the threads MediaPipe starts from it
(for several faces), run on one CPU, and every other thread of the process and
of its child processes on the others. A second stream gives every thread every CPU back: two
models need two CPUs. Linux only (per-thread affinity), and only with two CPUs or more.

Several such processes on one machine (`poise score` run in parallel) must not all take the same
CPU: each reserves one through a lock file in the temporary folder that no other process holds
(the kernel drops the lock when its process ends), and the lowest CPU is never reserved, so that
the other work always has one. A process that finds none free pins nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import threading
from pathlib import Path

from poise_common.processes import descendants, threads

log = logging.getLogger(__name__)


class CpuReservation:
    """Counts a process's open face streams and pins the only one, when it asks, to a CPU."""

    def __init__(self, enabled: bool = True) -> None:
        usable = enabled and hasattr(os, "sched_setaffinity") and Path("/proc/self/task").is_dir()
        self.cpus: frozenset[int] = frozenset(os.sched_getaffinity(0)) if usable else frozenset()
        self._lock = threading.Lock()
        self._open = 0
        self._holder: object | None = None
        self._lock_fd: int | None = None

    @property
    def possible(self) -> bool:
        return len(self.cpus) >= 2

    @property
    def holder(self) -> object | None:
        return self._holder

    def opened(self, stream: object) -> None:
        """A face stream opened; with two open, nothing is reserved any more."""
        with self._lock:
            self._open += 1
            if self._open > 1 and self._holder is not None:
                self._release()

    def claim(self, stream: object) -> bool:
        """Called on ``stream``'s model thread before it starts the model: pins that thread (and
        so every thread it starts) to one CPU and the rest of the process to the others, if
        ``stream`` is the only open stream. Whether it did."""
        with self._lock:
            if not self.possible or self._open != 1 or self._holder is not None:
                return False
            taken = _lock_a_cpu(sorted(self.cpus)[1:])
            if taken is None:
                return False
            own, self._lock_fd = taken
            me = threading.get_native_id()
            _pin(me, {own})
            _pin_all(self.cpus - {own}, skip=me)
            self._holder = stream
            log.debug("cpu reserved for the face model", extra={"cpu": own})
            return True

    def closed(self, stream: object) -> None:
        """A face stream closed; if it held the CPU, every thread gets every CPU back."""
        with self._lock:
            self._open = max(0, self._open - 1)
            if self._holder is stream:
                self._release()

    def _release(self) -> None:
        self._holder = None
        _pin_all(self.cpus)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # and with it the lock
            self._lock_fd = None


def _lock_a_cpu(candidates: list[int]) -> tuple[int, int] | None:
    """(a CPU no other process on this machine has reserved, the descriptor holding it), highest first."""
    folder = Path(tempfile.gettempdir()) / "poise-cpus"
    try:
        folder.mkdir(mode=0o777, exist_ok=True)
    except OSError:
        return None
    for cpu in reversed(candidates):
        try:
            fd = os.open(folder / f"cpu{cpu}", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444)
        except OSError:  # another user's folder or file: not ours to take
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another process
            os.close(fd)
            continue
        return cpu, fd
    return None


def _pin(tid: int, cpus: set[int] | frozenset[int]) -> None:
    try:
        os.sched_setaffinity(tid, cpus)
    except OSError:  # ended meanwhile, or not ours to move: it runs where it ran
        pass


def _pin_all(cpus: frozenset[int], skip: int | None = None) -> None:
    """Every thread of this process (but ``skip``) and of its descendants onto ``cpus``."""
    for pid in (os.getpid(), *descendants(os.getpid())):
        for tid in threads(pid):
            if tid != skip:
                _pin(tid, cpus)
