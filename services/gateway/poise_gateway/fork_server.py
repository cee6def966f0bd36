"""A fork server: one process that has imported the decoders and forks a fresh child per job.

Starting Python and importing PyAV, OpenCV and numpy costs a sandboxed child about 0.6 CPU
seconds, three times per answer (probe, frames, audio), on the same cores as the models. A fork
of a process that has done it already costs milliseconds, and each job still gets a process of
its own that no earlier file has touched: the server itself never opens a file.

The service and the server talk over a Unix socket: the service sends ``spawn`` with the two
pipe ends the child is to use (its job in, its messages out); the server forks, answers
``started <pid>``, and later ``exited <pid> <code>`` when it has reaped that child. The service
kills a child through a pidfd, which cannot reach another process that later gets the same pid.
Linux only (pidfds); elsewhere the sandbox starts a fresh Python per job.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

from poise_common.priority import run_nicer

log = logging.getLogger(__name__)

_MESSAGE_BYTES = 64
# How long a started server may take to answer its first spawn (it imports the decoders first).
_START_TIMEOUT_S = 60.0
# The exit code reported for a child whose server died before reaping it: it was killed.
_LOST = -signal.SIGKILL


def available() -> bool:
    """Whether this platform has what the fork server needs (pidfds and descriptor passing)."""
    return hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal") and hasattr(socket, "send_fds")


class _Exit:
    """A child's exit code, once its server has reaped it (or died)."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.code: int | None = None

    def set(self, code: int) -> None:
        self.code = code
        self._done.set()

    def wait(self, timeout: float | None) -> bool:
        return self._done.wait(timeout)

    def is_set(self) -> bool:
        return self._done.is_set()


class ForkedChild:
    """What the sandbox needs of a ``subprocess.Popen``, for a child of the fork server."""

    def __init__(self, pid: int, pidfd: int, exit_: _Exit, stdin, stdout) -> None:
        self.pid = pid
        self._pidfd: int | None = pidfd
        self._exit = exit_
        self.stdin = stdin
        self.stdout = stdout

    def poll(self) -> int | None:
        return self._exit.code if self._exit.is_set() else None

    def kill(self) -> None:
        # Even when an exit is known: a server that died reports its children lost, not ended.
        if self._pidfd is None:
            return
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:  # ended already
            pass

    def wait(self, timeout: float | None = None) -> int:
        if not self._exit.wait(timeout):
            raise subprocess.TimeoutExpired(f"forked child {self.pid}", timeout)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self.stdin is not None and not self.stdin.closed:
            self.stdin.close()
        return self._exit.code


class ForkServer:
    """The service's side: starts the server process and asks it for children. Thread-safe."""

    def __init__(self, command: list[str], env: dict[str, str], nice: int = 0) -> None:
        self.command = command
        self.env = env
        self.nice = nice
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._socket: socket.socket | None = None
        self._started: queue.Queue[tuple[int, _Exit] | None] = queue.Queue()

    def start(self) -> None:
        """Start the server process if it is not running (it imports the decoders meanwhile)."""
        with self._lock:
            self._ensure_running()

    def spawn(self) -> ForkedChild:
        """A fresh child waiting for its job on its stdin; raises ``OSError`` if none can be had."""
        with self._lock:  # one request at a time, so that each answer is the request's
            for attempt in (1, 2):  # a server that died since the last job is started again once
                self._ensure_running()
                job_in, job_out = os.pipe()
                messages_in, messages_out = os.pipe()
                try:
                    socket.send_fds(self._socket, [b"spawn"], [job_in, messages_out])
                except OSError:
                    os.close(job_out)
                    os.close(messages_in)
                    self._stop_locked()
                    if attempt == 2:
                        raise
                    continue
                finally:
                    os.close(job_in)
                    os.close(messages_out)
                try:
                    started = self._started.get(timeout=_START_TIMEOUT_S)
                except queue.Empty:
                    started = None
                if started is None:
                    os.close(job_out)
                    os.close(messages_in)
                    self._stop_locked()
                    if attempt == 2:
                        raise OSError("the fork server did not start a child")
                    continue
                pid, exit_ = started
                # The child waits for its job, so it is alive here and the pidfd is its own.
                pidfd = os.pidfd_open(pid)
                return ForkedChild(pid, pidfd, exit_, os.fdopen(job_out, "wb", buffering=0),
                                   os.fdopen(messages_in, "rb", buffering=0))
        raise AssertionError("not reached")

    def close(self) -> None:
        with self._lock:
            self._stop_locked()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # -- internals ------------------------------------------------------------------------------
    def _ensure_running(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self._stop_locked()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                [*self.command, str(theirs.fileno())], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), cwd="/", env=self.env,
            )
        finally:
            theirs.close()
        run_nicer(self._process.pid, self.nice)  # its children inherit it
        self._socket = ours
        self._started = queue.Queue()
        threading.Thread(target=self._read, args=(ours, self._started), name="poise-fork-server",
                         daemon=True).start()

    def _stop_locked(self) -> None:
        process, sock = self._process, self._socket
        self._process = self._socket = None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the server exits when its socket closes
            except OSError:
                pass
        if process is not None:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if sock is not None:
            sock.close()

    @staticmethod
    def _read(sock: socket.socket, started: queue.Queue) -> None:
        """The server's answers, in order: a started child is known before its exit can be."""
        live: dict[int, _Exit] = {}
        try:
            while True:
                message = sock.recv(_MESSAGE_BYTES)
                if not message:
                    break
                word, *numbers = message.split()
                if word == b"started" and len(numbers) == 1:
                    exit_ = _Exit()
                    live[int(numbers[0])] = exit_
                    started.put((int(numbers[0]), exit_))
                elif word == b"exited" and len(numbers) == 2:
                    exit_ = live.pop(int(numbers[0]), None)
                    if exit_ is not None:
                        exit_.set(int(numbers[1]))
        except (OSError, ValueError):
            pass
        finally:
            # The server is gone: whoever waits for it or for its children's exits hears so.
            started.put(None)
            for exit_ in live.values():
                exit_.set(_LOST)


# -- the server process -------------------------------------------------------------------------
def serve(control_fd: int, run_child: Callable[[], int | None]) -> None:
    """Fork a child per ``spawn`` on ``control_fd`` until the socket closes.

    ``run_child`` is what a child runs, with its job pipe as stdin and its message pipe as
    stdout; its return value is the child's exit code.
    """
    if len(os.listdir("/proc/self/task")) != 1:
        # A fork copies only the forking thread: a lock another one held would never be released.
        raise SystemExit("fork server: a library started a thread; refusing to fork")
    sock = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD writes the wakeup fd
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == wake_r:
                os.read(wake_r, 512)
                _report_exits(sock)
                continue
            message, fds, _, _ = socket.recv_fds(sock, _MESSAGE_BYTES, 2)
            if not message:  # the service closed its end: it has stopped
                return
            if message != b"spawn" or len(fds) != 2:
                for fd_ in fds:
                    os.close(fd_)
                continue
            pid = os.fork()
            if pid == 0:
                _become_child(fds, run_child)
            for fd_ in fds:
                os.close(fd_)
            sock.send(b"started %d" % pid)


def _report_exits(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sock.send(b"exited %d %d" % (pid, os.waitstatus_to_exitcode(status)))


def _become_child(fds: list[int], run_child: Callable[[], int | None]) -> None:
    """In the forked child: take the job's pipes as stdin and stdout, drop every other descriptor
    of the server, run the job, exit without running the server's exit handlers."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.dup2(fds[0], 0)
        os.dup2(fds[1], 1)
        for fd in _open_fds():
            if fd > 2:
                try:
                    os.close(fd)
                except OSError:
                    pass
        code = run_child() or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - a child reports by its exit code alone
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):  # os._exit does not flush what the job printed
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _open_fds() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(3, 1024))
