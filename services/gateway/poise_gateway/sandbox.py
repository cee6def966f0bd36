"""Probe and decode untrusted uploads in child processes held to limits.

FFmpeg parses whatever bytes a client sends. A crash, an endless loop or a huge allocation in
there must cost one child process and give the client a clear 422, never take the service down;
a child stopped from outside (the OOM killer, an operator) is the server's failure, a 503 to retry.
So every probe and every decode runs in a child of its own: one file per process, so nothing a
file does reaches the next one. On Linux the children are forked by a fork server that has
imported the decoders once (``poise_gateway.fork_server``): starting Python and importing PyAV
and OpenCV would cost each job 0.6 CPU seconds, longer than probing a file takes. Elsewhere
(or with ``media_fork_server`` off) each child is a fresh ``python -m poise_gateway.sandbox``,
and a few are started ahead of need (``media_warm_processes``).

Before it opens the file a child limits itself: address space (RLIMIT_AS), CPU seconds
(RLIMIT_CPU: the kernel kills it past them), no core dumps (they would hold a candidate's video)
and no file writes. The parent kills it when it runs past its wall-clock time. It inherits no
descriptors beyond its two pipes. Results come back as length-prefixed JSON headers and raw
bytes, never pickles, so a child that a file took over cannot make the service run code.
Frames come back as the JPEGs that go on the bus, encoded in the child: a twentieth of the raw
pixels' bytes through the pipe, and the encoding beside the service rather than in it.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import math
import os
import re
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import av.logging
from pydantic import TypeAdapter, ValidationError

from poise_common.priority import run_nicer
from poise_common.settings import GatewaySettings
from poise_gateway import fork_server
from poise_gateway.decode import SAMPLE_RATE, JpegFrame, encode_jpeg_bgr, iter_audio, iter_frames
from poise_gateway.errors import MediaJobKilled, MediaRejected
from poise_gateway.probe import MediaInfo, open_options, probe

log = logging.getLogger(__name__)

# Each message: JSON header length, payload length, then both.
_PREFIX = struct.Struct(">II")
_MAX_HEADER_BYTES = 64 << 10
_CODE = re.compile(r"^[a-z_]{1,40}$")
_MAX_MESSAGE_CHARS = 600
# Environment of a child: glibc would reserve 64 MiB of address space per decoding thread for
# its own heaps, which the address-space limit would count against a file that needs no more.
_CHILD_ENV = {"MALLOC_ARENA_MAX": "2", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
# Signals no file makes its reader send itself: the kernel's OOM killer, an operator or a shutdown
# sent them (a lost fork server reports its children as SIGKILLed too). The limits a child sets
# end it otherwise: SIGXCPU past its CPU seconds, an allocation failure (an error message, or a
# crash: SIGSEGV, SIGABRT) past its address space. SIGKILL at RLIMIT_CPU's hard limit would only
# follow a SIGXCPU that the child survived, and Python does not catch SIGXCPU.
_STOPPED_FROM_OUTSIDE = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
T = TypeVar("T")


class _Unreadable(Exception):
    """The child broke the protocol: a message too large, malformed or unexpected."""


class MediaSandbox:
    """Gives each job a child of its own: forked by the fork server where there is one, else
    started, keeping ``warm`` started ahead. Safe to use from many threads.

    ``stand_in`` is Python code that children run instead of the real job: tests use it to have
    children misbehave on purpose.
    """

    def __init__(self, warm: int = 2, nice: int = 0, fork: bool = True, stand_in: str | None = None) -> None:
        self.warm = warm
        self.nice = nice
        if stand_in is None:
            self.command = [sys.executable, "-m", "poise_gateway.sandbox"]
        else:
            self.command = [sys.executable, "-c", stand_in]
        env = {**os.environ, **_CHILD_ENV}
        self.fork_server: fork_server.ForkServer | None = None
        if fork and fork_server.available():
            server = [sys.executable, "-m", "poise_gateway.sandbox", "--fork-server"]
            server += ["--stand-in", stand_in] if stand_in is not None else []
            self.fork_server = fork_server.ForkServer(server, env, nice)
        self._env = env
        self._idle: list[subprocess.Popen] = []
        self._lock = threading.Lock()

    # -- the three jobs ---------------------------------------------------------------------
    def probe(self, path: Path, limits: GatewaySettings) -> MediaInfo:
        """:func:`poise_gateway.probe.probe` in a child; raises ``MediaRejected`` for a bad file."""
        request = {"job": "probe", "path": str(path.resolve()), "limits": limits.model_dump(mode="json")}
        for info in self._run(request, limits, limits.media_cpu_s, "info", 0, _parse_info):
            return info
        raise _undecodable()  # not reached: the child's last word is its result or a failure

    def frames(self, path: Path, limits: GatewaySettings, duration_s: float) -> Iterator[JpegFrame]:
        """:func:`poise_gateway.decode.iter_frames` in a child, at ``limits``' sampling, each frame
        encoded there as :func:`encode_jpeg` does at ``limits.jpeg_quality``."""
        request = {
            "job": "frames", "path": str(path.resolve()),
            "sample_fps": limits.sample_fps, "frame_width": limits.frame_width, "jpeg_quality": limits.jpeg_quality,
        }
        largest = max(limits.max_width, limits.max_height) ** 2 * 3
        return self._run(request, limits, self._decode_cpu_s(limits, duration_s), "frame", largest, _parse_frame)

    def audio(self, path: Path, limits: GatewaySettings, duration_s: float) -> Iterator[tuple[float, bytes]]:
        """:func:`poise_gateway.decode.iter_audio` in a child, in ``limits.audio_chunk_s`` chunks."""
        request = {"job": "audio", "path": str(path.resolve()), "chunk_s": limits.audio_chunk_s}
        chunk_bytes = math.ceil(limits.audio_chunk_s * SAMPLE_RATE) * 2
        return self._run(request, limits, self._decode_cpu_s(limits, duration_s), "audio", chunk_bytes, _parse_audio)

    @staticmethod
    def _decode_cpu_s(limits: GatewaySettings, duration_s: float) -> float:
        return limits.media_cpu_s + limits.media_cpu_per_media_s * max(0.0, duration_s)

    # -- children ---------------------------------------------------------------------------
    def _start(self) -> subprocess.Popen:
        child = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            bufsize=0, close_fds=True, cwd="/", env=self._env,
        )
        run_nicer(child.pid, self.nice)
        return child

    def warm_up(self) -> None:
        """Start the fork server (or the warm children) now, so that the first upload does not
        wait for Python to start and import PyAV (about half a second, which its first frame
        would otherwise be late by)."""
        if self.fork_server is not None:
            self.fork_server.start()
            return
        with self._lock:
            self._top_up()

    def _top_up(self) -> None:
        while len(self._idle) < self.warm:
            self._idle.append(self._start())

    def _take(self) -> subprocess.Popen | fork_server.ForkedChild:
        """A forked child, or a started one (a warm one when there is one, the warm ones topped up)."""
        if self.fork_server is not None:
            try:
                return self.fork_server.spawn()
            except OSError as exc:
                # The job still runs, in a child started the slow way.
                log.warning("fork server unavailable", extra={"error": type(exc).__name__})
        with self._lock:
            child = None
            while self._idle and child is None:
                candidate = self._idle.pop(0)
                if candidate.poll() is None:
                    child = candidate
                else:
                    _reap(candidate)
            self._top_up()
        return child or self._start()

    def close(self) -> None:
        """Stop the fork server and the warm children (an idle child exits when its job pipe closes)."""
        if self.fork_server is not None:
            self.fork_server.close()
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            try:
                child.stdin.close()
                child.wait(2)
            except (OSError, subprocess.TimeoutExpired):
                child.kill()
            _reap(child)

    def _run(
        self, request: dict, limits: GatewaySettings, cpu_s: float, item: str, max_payload: int,
        parse: Callable[[dict, bytearray], T],
    ) -> Iterator[T]:
        """Give ``request`` to a fresh child; yield its ``item`` messages, parsed, until it ends.

        Each message must come within ``limits.media_timeout_s`` of the previous one (the time a
        consumer takes between them does not count). Every failure becomes ``MediaRejected``,
        except a child stopped from outside, which is ``MediaJobKilled`` (the server's fault).
        """
        request = {**request, "memory_bytes": limits.media_memory_mb << 20, "cpu_s": cpu_s}
        job = request["job"]
        child = self._take()
        started = time.monotonic()
        try:
            try:
                child.stdin.write(json.dumps(request).encode() + b"\n")
                child.stdin.close()
            except OSError:  # the child died while it waited: its exit status says how
                pass
            reader = _Reader(child.stdout, max_payload)
            while True:
                header, payload = reader.message(limits.media_timeout_s)
                kind = header.get("kind")
                if kind == item:
                    yield parse(header, payload)
                    if item == "info":  # a probe's one result
                        return
                elif kind == "end":
                    return
                elif kind == "rejected":
                    raise _rejection(header)
                elif kind == "memory":
                    if _count(header.get("own_mb")):
                        # The setting's fault, not the file's: say so to whoever runs the service.
                        log.warning("media_memory_mb is below a decoding process's own size",
                                    extra={"media_memory_mb": limits.media_memory_mb, "own_mb": header["own_mb"]})
                    raise _memory(limits)
                elif kind == "error":
                    log.warning("media job failed", extra={"job": job, "error": str(header.get("type"))[:80]})
                    raise _undecodable()
                else:
                    raise _Unreadable(f"unexpected message {str(kind)[:40]!r}")
        except TimeoutError:
            child.kill()
            log.warning("media job timed out", extra={"job": job, "seconds": round(time.monotonic() - started, 1)})
            raise MediaRejected(
                "decode_timeout",
                f"reading the file took longer than {limits.media_timeout_s:g} s; it is damaged or not a normal video",
            ) from None
        except EOFError:
            raise _verdict(child, job, cpu_s, limits) from None
        except _Unreadable as exc:
            log.warning("media job broke the protocol", extra={"job": job, "problem": str(exc)})
            raise _undecodable() from None
        finally:
            # Done, failed, or the consumer stopped early: the child is not needed any more.
            child.kill()
            _reap(child)


@functools.cache
def _media_info() -> TypeAdapter[MediaInfo]:
    return TypeAdapter(MediaInfo)


def _parse_info(header: dict, _payload: bytearray) -> MediaInfo:
    try:
        return _media_info().validate_python(header.get("info"))
    except ValidationError as exc:
        raise _Unreadable("malformed media facts") from exc


def _parse_frame(header: dict, payload: bytearray) -> JpegFrame:
    t, width, height = header.get("t"), header.get("width"), header.get("height")
    if not (_number(t) and _count(width) and _count(height)) or not payload.startswith(b"\xff\xd8"):
        raise _Unreadable("malformed frame")
    return JpegFrame(float(t), width, height, bytes(payload))


def _parse_audio(header: dict, payload: bytearray) -> tuple[float, bytes]:
    if not _number(header.get("t")) or len(payload) % 2:
        raise _Unreadable("malformed audio")
    return float(header["t"]), bytes(payload)


class _Reader:
    """Reads a child's messages from its stdout, each within a deadline."""

    def __init__(self, stream, max_payload: int) -> None:
        self.stream = stream
        self.max_payload = max_payload
        self.poller = select.poll()  # not select(): descriptors above 1024 are common in a server
        self.poller.register(stream.fileno(), select.POLLIN)

    def message(self, timeout_s: float) -> tuple[dict, bytearray]:
        deadline = time.monotonic() + timeout_s
        header_len, payload_len = _PREFIX.unpack(self._exactly(_PREFIX.size, deadline))
        if header_len > _MAX_HEADER_BYTES or payload_len > self.max_payload:
            raise _Unreadable("message too large")
        try:
            header = json.loads(self._exactly(header_len, deadline))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _Unreadable("header is not JSON") from exc
        if not isinstance(header, dict):
            raise _Unreadable("header is not an object")
        return header, self._exactly(payload_len, deadline)

    def _exactly(self, size: int, deadline: float) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            wait_ms = (deadline - time.monotonic()) * 1000
            if wait_ms <= 0 or not self.poller.poll(wait_ms):
                raise TimeoutError
            count = self.stream.readinto(view[got:])
            if not count:
                raise EOFError
            got += count
        return buffer


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _reap(child: subprocess.Popen) -> None:
    child.wait()
    child.stdout.close()


def _rejection(header: dict) -> MediaRejected:
    code, message = header.get("code"), header.get("message")
    if not (isinstance(code, str) and _CODE.match(code) and isinstance(message, str)):
        raise _Unreadable("malformed refusal")
    return MediaRejected(code, message[:_MAX_MESSAGE_CHARS])


def _memory(limits: GatewaySettings) -> MediaRejected:
    return MediaRejected(
        "decode_memory",
        f"reading the file needs more than the {limits.media_memory_mb} MiB of memory allowed; "
        "it is damaged or not a normal video",
    )


def _undecodable() -> MediaRejected:
    return MediaRejected("undecodable", "the file could not be decoded; it is damaged or not a normal video")


def _verdict(
    child: subprocess.Popen, job: str, cpu_s: float, limits: GatewaySettings
) -> MediaRejected | MediaJobKilled:
    """Why a child ended without its result, as the client should hear it."""
    code = child.wait()
    cause = signal.Signals(-code).name if code < 0 and -code in signal.valid_signals() else f"exit {code}"
    log.warning("media job died", extra={"job": job, "cause": cause})
    if code == -signal.SIGXCPU:  # past its CPU limit
        return MediaRejected(
            "decode_timeout",
            f"reading the file needed more than the {cpu_s:g} CPU seconds allowed; "
            "it is damaged or not a normal video",
        )
    if code < 0 and -code in _STOPPED_FROM_OUTSIDE:
        return MediaJobKilled(
            "decode_interrupted",
            "the server stopped the process reading the file before it finished (not because of the file); "
            "try again",
        )
    return _undecodable()


@functools.cache
def _shared_sandbox(warm: int, nice: int, fork: bool) -> MediaSandbox:
    sandbox = MediaSandbox(warm, nice=nice, fork=fork)
    atexit.register(sandbox.close)
    return sandbox


def shared_sandbox(limits: GatewaySettings) -> MediaSandbox:
    """This process's sandbox (children take their limits with each job, so one serves every caller)."""
    return _shared_sandbox(limits.media_warm_processes, limits.media_nice, limits.media_fork_server)


def isolated_probe(path: Path, limits: GatewaySettings) -> MediaInfo:
    """Probe ``path`` in a limited child process; raises ``MediaRejected`` for a bad file."""
    return shared_sandbox(limits).probe(path, limits)


def isolated_frames(path: Path, limits: GatewaySettings, duration_s: float) -> Iterator[JpegFrame]:
    """Sampled frames of ``path`` as JPEGs, decoded and encoded in a limited child process."""
    return shared_sandbox(limits).frames(path, limits, duration_s)


def isolated_audio(path: Path, limits: GatewaySettings, duration_s: float) -> Iterator[tuple[float, bytes]]:
    """16 kHz mono PCM chunks of ``path``, decoded in a limited child process."""
    return shared_sandbox(limits).audio(path, limits, duration_s)


# -- the child ---------------------------------------------------------------------------------
def _limit_self(memory_bytes: int, cpu_s: float) -> None:
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(used.ru_utime + used.ru_stime + cpu_s)  # starting Python already used some
    _lower(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU at the first, SIGKILL at the second
    _lower(resource.RLIMIT_AS, memory_bytes, memory_bytes)
    _lower(resource.RLIMIT_CORE, 0, 0)
    _lower(resource.RLIMIT_FSIZE, 0, 0)


def _lower(kind: int, soft: int, hard: int) -> None:
    """Set a limit, never above one the service itself runs under (raising it would fail)."""
    _, ceiling = resource.getrlimit(kind)
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(kind, (soft, hard))


def _send(channel, header: dict, payload: bytes | memoryview = b"") -> None:
    encoded = json.dumps(header).encode()
    channel.write(_PREFIX.pack(len(encoded), len(payload)))
    channel.write(encoded)
    channel.write(payload)


def _probe_job(request: dict, send: Callable) -> None:
    info = probe(Path(request["path"]), GatewaySettings.model_validate(request["limits"]))
    send({"kind": "info", "info": asdict(info)})


def _frames_job(request: dict, send: Callable) -> None:
    import cv2

    cv2.setNumThreads(1)  # one frame at a time: a thread pool would only take address space
    # Decoded in OpenCV's channel order: the JPEG encode_jpeg makes of the RGB frame, without its swap.
    for t, bgr in iter_frames(Path(request["path"]), request["sample_fps"], request["frame_width"], "bgr24"):
        jpeg = encode_jpeg_bgr(bgr, request["jpeg_quality"])
        send({"kind": "frame", "t": t, "width": bgr.shape[1], "height": bgr.shape[0]}, jpeg)
    send({"kind": "end"})


def _audio_job(request: dict, send: Callable) -> None:
    for t, pcm in iter_audio(Path(request["path"]), request["chunk_s"]):
        send({"kind": "audio", "t": t}, pcm)
    send({"kind": "end"})


_JOBS = {"probe": _probe_job, "frames": _frames_job, "audio": _audio_job}


def _prepare() -> None:
    """What every child needs before its job: done once in the fork server, before it forks."""
    open_options()
    av.logging.set_level(av.logging.ERROR)  # so that a refused format can be named
    import cv2  # noqa: F401 - imported here so that a forked frames job does not import it


def _child() -> None:
    """One job: wait for it, limit this process, do it, report, exit."""
    _prepare()  # while waiting for a job, not after it came
    _one_job()


def _one_job() -> None:
    # Only this process's messages go to the parent: stray output of a library goes nowhere.
    channel = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    line = sys.stdin.buffer.readline(1 << 20)
    if not line:  # the service closed its warm children
        return
    request = json.loads(line)
    send = functools.partial(_send, channel)
    own = _memory_field(b"VmSize:")
    if own >= request["memory_bytes"]:
        # The limit is below what this process holds before it reads anything: every allocation
        # would fail, and FFmpeg does not survive each failed one (on one host it crashed inside
        # av.open, which read as a damaged file). Refused without touching the file.
        send({"kind": "memory", "own_mb": own >> 20})
        channel.flush()
        return
    _limit_self(request["memory_bytes"], request["cpu_s"])
    try:
        _JOBS[request["job"]](request, send)
    except MediaRejected as exc:
        send({"kind": "rejected", "code": exc.code, "message": exc.message})
    except MemoryError:
        send({"kind": "memory"})
    except Exception as exc:  # noqa: BLE001 - any other failure is reported by its type alone
        # Out of address space, a library may fail in its own way (a module or a thread that
        # cannot be mapped): near the limit, that is the limit's doing.
        near_limit = _memory_field(b"VmPeak:") >= 0.9 * request["memory_bytes"]
        send({"kind": "memory"} if near_limit else {"kind": "error", "type": type(exc).__name__})
    channel.flush()


def _serve_forks(arguments: list[str]) -> None:
    """``--fork-server [--stand-in CODE] FD``: fork a child per job (see ``fork_server``)."""
    stand_in = arguments[1] if arguments[0] == "--stand-in" else None
    _prepare()
    if stand_in is None:
        fork_server.serve(int(arguments[-1]), _one_job)
    else:
        fork_server.serve(int(arguments[-1]), lambda: exec(stand_in, {"__name__": "__main__"}))


def _memory_field(field: bytes) -> int:
    """This process's address space, now (``VmSize:``) or at most (``VmPeak:``), in bytes (0 where
    the kernel does not say)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except MemoryError:  # not even room to read it
        return sys.maxsize
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fork-server"]:
        _serve_forks(sys.argv[2:])
    else:
        _child()
