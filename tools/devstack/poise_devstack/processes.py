"""One subprocess that tests own: its own process group, a log file, health polling, stop by PID.

Kafka, PostgreSQL and the Poise services all run through :class:`ManagedProcess`, so every one
of them is stopped the same way and none outlives the test run that started it.
"""

from __future__ import annotations

import atexit
import logging
import os
import pwd
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

log = logging.getLogger(__name__)

# Processes still running; the atexit hook stops them so an interrupted pytest run does not leave
# a JVM or a postmaster behind. Each process has its own session, so a terminal's Ctrl-C never
# reaches it and nothing else would.
_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()
_atexit_registered = False


class StartupError(RuntimeError):
    """A managed process exited or never became ready; the message carries its log tail."""


def _stop_all_at_exit() -> None:
    with _live_lock:
        leftovers = list(_live)
    for proc in leftovers:
        log.warning("stopping %s (pid %s) left running at interpreter exit", proc.name, proc.pid)
        proc.terminate(timeout=10.0)


def _register(proc: ManagedProcess) -> None:
    global _atexit_registered
    with _live_lock:
        _live.add(proc)
        if not _atexit_registered:
            atexit.register(_stop_all_at_exit)
            _atexit_registered = True


def _unregister(proc: ManagedProcess) -> None:
    with _live_lock:
        _live.discard(proc)


def pid_exists(pid: int) -> bool:
    """True while a process with this PID exists (a zombie counts: it still holds the PID)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ManagedProcess:
    """A subprocess in its own process group, logging to a file, stoppable by PID.

    Args:
        args: the command line.
        log_path: file that receives the process's stdout and stderr (appended, so a restart keeps
            the earlier output).
        env: variables added to (or, with ``inherit_env=False``, used instead of) this process's
            environment.
        inherit_env: start from ``os.environ``.
        cwd: working directory.
        user: run as this system user (needs root); PostgreSQL refuses to run as root.
        name: used in log lines and errors.
        stop_signal: what :meth:`terminate` sends first (PostgreSQL wants SIGINT for a fast shutdown).
        signal_group: send ``stop_signal`` to the whole process group rather than the leader only.
            A postmaster must get it alone: its helper processes treat SIGINT differently.
    """

    def __init__(
        self,
        args: Sequence[str | os.PathLike[str]],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        cwd: Path | None = None,
        user: str | None = None,
        name: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        signal_group: bool = True,
    ) -> None:
        self.args = [os.fspath(a) for a in args]
        self.log_path = Path(log_path)
        self.env = dict(env or {})
        self.inherit_env = inherit_env
        self.cwd = cwd
        self.user = user
        self.name = name or Path(self.args[0]).name
        self.stop_signal = stop_signal
        self.signal_group = signal_group
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the process. Raises :class:`RuntimeError` if it is already running."""
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._close_log()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # closed when the process is finished
        env = dict(os.environ) if self.inherit_env else {}
        env.update(self.env)
        user_kwargs: dict[str, object] = {}
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            if entry.pw_uid != os.geteuid():
                user_kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
        try:
            self._proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                # A new session makes the child the leader of its own process group, so killpg
                # reaches it and its children and nothing of ours.
                start_new_session=True,
                **user_kwargs,  # type: ignore[arg-type]
            )
        except BaseException:
            self._close_log()
            raise
        _register(self)
        log.info("started %s (pid %d), log %s", self.name, self._proc.pid, self.log_path)

    def terminate(self, timeout: float = 20.0) -> int | None:
        """Send ``stop_signal``, wait up to ``timeout`` s, then SIGKILL. Idempotent.

        Returns the exit status, or None if the process was never started.
        """
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self._send(self.stop_signal, group=self.signal_group)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored %s for %.0f s; killing it",
                            self.name, proc.pid, self.stop_signal.name, timeout)
                self._send(signal.SIGKILL, group=True)
                proc.wait()
        self._finish()
        return proc.returncode

    def detach(self) -> None:
        """Leave the process running when this interpreter exits (``make up``)."""
        _unregister(self)

    def kill(self) -> int | None:
        """SIGKILL the whole process group now, as a crash would. Idempotent."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self._send(signal.SIGKILL, group=True)
            proc.wait()
        self._finish()
        return proc.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit on its own and return its status."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        code = self._proc.wait(timeout=timeout)
        self._finish()
        return code

    # -- state -----------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """PID of the running process, None when it is not running."""
        return self._proc.pid if self.is_running() and self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last run, None while running or never started."""
        return None if self._proc is None else self._proc.poll()

    def is_running(self) -> bool:
        """True while the process has not exited (this also reaps it once it has)."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log file ('' when there is none yet)."""
        return tail_file(self.log_path, lines)

    # -- readiness -------------------------------------------------------------------------------

    def wait_until(
        self,
        check: Callable[[], bool],
        timeout: float,
        what: str,
        interval: float = 0.2,
        extra_logs: Sequence[Path] = (),
    ) -> None:
        """Poll ``check`` until it returns True.

        Gives up at once if the process exits, rather than waiting out the timeout.

        Raises:
            StartupError: the process exited, or ``check`` never passed within ``timeout`` s.
                The message holds the tail of the log (and of ``extra_logs``).
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                raise StartupError(self._describe_failure(
                    f"{self.name} exited with status {self.returncode} before {what}", extra_logs))
            if check():
                return
            if time.monotonic() >= deadline:
                raise StartupError(self._describe_failure(
                    f"{self.name} (pid {self.pid}) not {what} within {timeout:g} s", extra_logs))
            time.sleep(interval)

    def wait_healthy(self, url: str, timeout: float = 60.0, interval: float = 0.2) -> None:
        """Poll ``url`` with GET until it answers 200.

        Raises:
            StartupError: the process exited or the URL never answered 200 in time.
        """

        def healthy() -> bool:
            try:
                return httpx.get(url, timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait_until(healthy, timeout, f"healthy at {url}", interval)

    # -- context manager -------------------------------------------------------------------------

    def __enter__(self) -> ManagedProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.terminate()

    # -- internals -------------------------------------------------------------------------------

    def _send(self, sig: signal.Signals, *, group: bool) -> None:
        assert self._proc is not None
        try:
            if group:
                # The child is its session's leader, so its PID is also its process group ID.
                os.killpg(self._proc.pid, sig)
            else:
                os.kill(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def _finish(self) -> None:
        # Children the leader left behind would otherwise outlive the test run.
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _unregister(self)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _describe_failure(self, headline: str, extra_logs: Sequence[Path]) -> str:
        parts = [headline, f"--- last lines of {self.log_path} ---", self.log_tail(40)]
        for path in extra_logs:
            parts += [f"--- last lines of {path} ---", tail_file(path, 40)]
        return "\n".join(parts)


def tail_file(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file, '' when it does not exist."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            # Enough for 40 long Java log lines without reading a whole big log.
            handle.seek(max(0, size - 256 * 1024))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
