"""Run one Poise service as its own process: logging, metrics, health, HTTP and a draining stop.

Each service's ``__main__`` hands :func:`main` a *build* function that constructs its
service objects (and anything they need, such as a database engine); the runner does the
rest the same way for every process:

1. logging (one line per record), the native-stderr filter, a per-process Prometheus registry;
2. the HTTP server (``/healthz``, ``/readyz``, ``/metrics``) on ``settings.http_host`` and the
   service's port, started first so that liveness probes answer while models load;
3. the bus, then ``build``, then each service's ``start()`` (which subscribes), then the
   service's routers; only then does ``/readyz`` answer 200;
4. on SIGTERM or SIGINT: not ready (new API requests get 503), requests in flight finish,
   each service ``stop()``s (draining: the in-flight message is finished and committed),
   the bus stops, the HTTP server stops, ``ServiceParts.close`` runs (e.g. an engine's
   ``dispose``), and the process exits 0. A second signal exits at once.

A failure while starting (bus unreachable, model missing, port taken) is one error line
and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Protocol

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, ProcessCollector, generate_latest
from pydantic import BaseModel, ValidationError

from poise_common.api_errors import install_error_handling
from poise_common.bus import Bus, create_bus
from poise_common.bus.base import failure_label
from poise_common.metrics import BusMetrics
from poise_common.native_stderr import filter_native_stderr
from poise_common.settings import PoiseSettings

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_START_FAILED = 1
EXIT_BAD_SETTINGS = 2

# Paths that answer whatever the process is doing: probes and scrapes must work while
# models load and while the service drains.
ALWAYS_OPEN = frozenset({"/healthz", "/readyz", "/metrics"})

# Settings every service process reads (see settings_help).
COMMON_SETTINGS = ("bus_url", "http_host", "log_level")


class Lifecycle(Protocol):
    """What the runner starts and stops: every service object has these two."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class ServiceParts:
    """What a build function hands back.

    ``services`` are started in order once the bus is up and stopped in reverse order;
    ``routers`` are added to the process's HTTP app once they have started; ``close``
    runs last, after the bus has stopped (dispose engines, close files).
    """

    services: Sequence[Lifecycle] = ()
    routers: Sequence[APIRouter] = ()
    close: Sequence[Callable[[], object]] = ()


Build = Callable[[PoiseSettings, Bus, CollectorRegistry], Awaitable[ServiceParts]]
"""Construct a service's objects on a started bus. It must not start them (the runner does),
and it cleans up after itself if it fails half-way."""


# -- logging -----------------------------------------------------------------------------
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message", "taskName",
}
# Structured fields that could carry personal data; their values never reach a log line,
# whoever passes them.
_PRIVATE_FIELDS = frozenset(
    {"path", "paths", "file", "filename", "media_path", "transcript", "text", "words", "candidate_ref", "email"}
)


def _field(key: str, value: object) -> str:
    if key in _PRIVATE_FIELDS:
        return f"{key}=[redacted]"
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        text = json.dumps(text, ensure_ascii=False)
    return f"{key}={text}"


# Frames of our own code a log line names besides the innermost one: the calls that led there.
_OWN_FRAMES = 4
_LIBRARY_FOLDERS = ("site-packages", "dist-packages", sysconfig.get_paths()["stdlib"])


def _code_place(frame: traceback.FrameSummary) -> str:
    path = Path(frame.filename)
    return f"{path.parent.name}/{path.name}:{frame.lineno}"


def _places(tb) -> str:
    """Where an exception was raised (its innermost frame, often in a library) and the innermost
    frames of our own code on the way there, innermost first."""
    frames = traceback.extract_tb(tb)
    if not frames:
        return ""
    own = [f for f in frames[:-1] if not any(folder in f.filename for folder in _LIBRARY_FOLDERS)]
    return " < ".join(_code_place(f) for f in [frames[-1], *reversed(own[-_OWN_FRAMES:])])


def exception_summary(error: BaseException) -> str:
    """What a log line says of an exception: for it and each exception it came from, its type (with
    the database's or inference server's error code, see failure_label) and where it was raised
    (``folder/file.py:line`` of the innermost frame and of our code's calls to it). Never its message, nor a
    frame's source line: a database error's text can quote the statement and its values, and an
    exception's message can hold whatever the failing code held (names, emails, candidate links)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        where = _places(current.__traceback__)
        parts.append(failure_label(current) + (f" at {where}" if where else ""))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "; from ".join(parts)


class LineFormatter(logging.Formatter):
    """``<UTC time> <LEVEL> <logger>: <message> key=value ...``, always exactly one line.

    ``extra={...}`` fields are appended as key=value; an exception is summarised as ``exc=`` by
    :func:`exception_summary` (types, error codes and code locations, never its text).
    """

    converter = time.gmtime
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def format(self, record: logging.LogRecord) -> str:
        parts = [self.formatTime(record), record.levelname, f"{record.name}:", record.getMessage()]
        parts += [
            _field(key, value)
            for key, value in vars(record).items()
            if key not in _RECORD_FIELDS and not key.startswith("_")
        ]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(_field("exc", exception_summary(record.exc_info[1])))
        return " ".join(parts).replace("\r", "\\r").replace("\n", "\\n")


def configure_logging(level: str) -> None:
    """Send every logger's records to stderr as single lines at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter())
    numeric = logging.getLevelName(level.upper())
    logging.basicConfig(handlers=[handler], level=numeric if isinstance(numeric, int) else logging.INFO, force=True)
    if not isinstance(numeric, int):
        log.warning("unknown log level; using INFO", extra={"log_level": level})


# -- the HTTP app --------------------------------------------------------------------------
class Readiness:
    """Where the process stands (starting, ready, stopping) and how many API requests run."""

    def __init__(self, registry: CollectorRegistry, name: str) -> None:
        self.state = "starting"
        self.in_flight = 0
        self._idle: asyncio.Event | None = None
        self._gauge = Gauge(f"poise_{name}_ready", "1 while the process takes traffic, else 0.", registry=registry)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def set(self, state: str) -> None:
        self.state = state
        self._gauge.set(1 if state == "ready" else 0)

    def request_started(self) -> None:
        self.in_flight += 1

    def request_done(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no API request runs. False when ``timeout_s`` passed first."""
        if self.in_flight == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            self._idle = None


class _Gate:
    """ASGI middleware: API routes get 503 unless the process is ready; it counts those in flight.

    Pure ASGI (not BaseHTTPMiddleware) so request bodies stream through untouched.
    """

    def __init__(self, app, readiness: Readiness) -> None:
        self.app = app
        self.readiness = readiness

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in ALWAYS_OPEN:
            await self.app(scope, receive, send)
            return
        if not self.readiness.ready:
            response = JSONResponse(
                {"error": {"code": "not_ready", "message": f"the service is {self.readiness.state}"}},
                status_code=503,
                headers={"Retry-After": "5"},
            )
            await response(scope, receive, send)
            return
        self.readiness.request_started()
        try:
            await self.app(scope, receive, send)
        finally:
            self.readiness.request_done()


def create_app(name: str, registry: CollectorRegistry, readiness: Readiness) -> FastAPI:
    """The process's HTTP app: health, readiness and metrics; services add their routers later."""
    app = FastAPI(title=f"poise-{name}")
    app.add_middleware(_Gate, readiness=readiness)
    install_error_handling(app)

    # async routes run on the event loop itself, so an answer proves the loop is alive.
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        """Liveness: the event loop answers."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Readiness: 200 once the bus is up and the service subscribed; 503 before and while stopping."""
        return JSONResponse({"status": readiness.state}, status_code=200 if readiness.ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics of this process."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the runner drains the service first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn would re-raise a captured SIGTERM after serving, killing the process
        # with a signal instead of letting the runner finish its drain and exit 0.
        yield


def _listen(host: str, port: int) -> socket.socket:
    """Bind here rather than inside uvicorn, whose bind failure calls sys.exit from a task."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.set_inheritable(True)
    return sock


# -- the process ---------------------------------------------------------------------------
def _reason(exc: BaseException) -> str:
    kind = type(exc).__name__
    text = str(exc).strip() or "no details"
    return (text if text.startswith(kind) else f"{kind}: {text}")[:500]


class ServiceProcess:
    """One service's bus, objects and HTTP app, started and stopped in a fixed order."""

    def __init__(self, name: str, build: Build, settings: PoiseSettings, request_grace_s: float = 20.0) -> None:
        self.name = name
        self.build = build
        self.settings = settings
        self.request_grace_s = request_grace_s
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        Gauge(
            f"poise_{name}_process_start_time_seconds", "When this process started (Unix time).",
            registry=self.registry,
        ).set(time.time())
        self.readiness = Readiness(self.registry, name)
        self.app = create_app(name, self.registry, self.readiness)
        self.bus: Bus | None = None
        self.parts: ServiceParts | None = None
        self.started: list[Lifecycle] = []

    async def start(self) -> None:
        """Bus, build, start each service, add routers, then ready. Raises on any failure."""
        self.bus = create_bus(self.settings.bus_url, metrics=BusMetrics(self.registry, self.name))
        await self.bus.start()
        self.parts = await self.build(self.settings, self.bus, self.registry)
        for service in self.parts.services:
            await service.start()
            self.started.append(service)
        for router in self.parts.routers:
            # Safe while serving: the gate answers 503 to every API path until ready.
            self.app.include_router(router)
        self.app.openapi_schema = None
        self.readiness.set("ready")

    async def stop(self) -> bool:
        """Undo whatever ``start`` got to, in reverse. False if a step failed (each is still tried)."""
        self.readiness.set("stopping")
        clean = True
        if not await self.readiness.wait_idle(self.request_grace_s):
            log.warning("requests still running after the grace period", extra={"requests": self.readiness.in_flight})
        steps: list[tuple[str, Callable[[], object]]] = [
            (f"stop {type(s).__name__}", s.stop) for s in reversed(self.started)
        ]
        if self.bus is not None:
            steps.append(("stop bus", self.bus.stop))
        steps += [("close", close) for close in (self.parts.close if self.parts else ())]
        for what, step in steps:
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - every step runs; the exit status reports failure
                clean = False
                log.error("%s failed: %s", what, _reason(exc))
        self.started.clear()
        return clean


@contextlib.contextmanager
def _signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop``; a second one exits at once (a person pressing Ctrl+C twice)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # embedded in another program: it sets ``stop`` itself
        return
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.error("second %s: exiting without draining", sig.name)
            logging.shutdown()
            os._exit(128 + sig.value)
        log.info("%s received: draining", sig.name)
        stop.set()

    handled = (signal.SIGTERM, signal.SIGINT)
    for sig in handled:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


async def run_service(
    name: str,
    build: Build,
    settings: PoiseSettings,
    *,
    stop: asyncio.Event | None = None,
    request_grace_s: float = 20.0,
) -> int:
    """Run service ``name`` until SIGTERM/SIGINT (or ``stop`` is set); return the exit status.

    The HTTP port is ``settings.<name>.port``. ``request_grace_s`` bounds how long API
    requests in flight at shutdown may take before the service stops anyway.
    """
    stop = stop or asyncio.Event()
    process = ServiceProcess(name, build, settings, request_grace_s)
    host, port = settings.http_host, getattr(settings, name).port
    try:
        sock = _listen(host, port)
    except OSError as exc:
        log.error("%s failed to start: cannot listen on %s:%d: %s", name, host, port, exc.strerror or exc)
        return EXIT_START_FAILED
    config = uvicorn.Config(
        process.app, host=host, port=port, lifespan="off", log_config=None, access_log=False,
        timeout_graceful_shutdown=5, server_header=False,
    )
    server = _Server(config)
    code = EXIT_OK
    with _signals(stop):
        http = asyncio.create_task(server.serve(sockets=[sock]), name=f"{name}-http")
        log.info("%s serving health and metrics", name, extra={"port": port})
        starting = asyncio.create_task(process.start(), name=f"{name}-start")
        stopping = asyncio.create_task(stop.wait(), name=f"{name}-stop")
        await asyncio.wait({starting, stopping, http}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and starting.exception() is None:
            log.info("%s ready", name)
            await asyncio.wait({stopping, http}, return_when=asyncio.FIRST_COMPLETED)
        elif starting.done():
            exc = starting.exception()
            log.error("%s failed to start: %s", name, _reason(exc))
            log.debug("start failure", exc_info=exc)
            code = EXIT_START_FAILED
        else:  # a signal (or a dead HTTP server) while starting: abandon the start
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        if http.done() and not stop.is_set():
            log.error("%s: the HTTP server stopped unexpectedly", name)
            code = code or EXIT_START_FAILED
        log.info("%s stopping", name)
        if not await process.stop():
            code = code or EXIT_START_FAILED
        server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await http
        stopping.cancel()
    log.info("%s stopped", name, extra={"exit_status": code})
    return code


# -- command line --------------------------------------------------------------------------
def _default(info) -> str:
    if info.default_factory is not None:
        return str(info.default_factory())
    return "unset" if info.default is None else str(info.default)


def settings_help(keys: Sequence[str]) -> str:
    """The environment variables behind ``keys``: a top-level field (``bus_url``), a whole
    nested section (``nlp``) or one field of it (``nlp.min_words_for_scoring``)."""
    lines = ["settings (environment variables):"]

    def add(env: str, info) -> None:
        lines.append(f"  {env}")
        lines.append(f"      {(info.description or '').rstrip('.')} (default: {_default(info)})")

    for key in keys:
        section, _, sub = key.partition(".")
        info = PoiseSettings.model_fields[section]
        model = info.annotation if isinstance(info.annotation, type) else None
        if model is not None and issubclass(model, BaseModel):
            for name, sub_info in model.model_fields.items():
                if not sub or name == sub:
                    add(f"POISE_{section.upper()}__{name.upper()}", sub_info)
        else:
            add(f"POISE_{section.upper()}", info)
    lines.append("  POISE_NATIVE_LOGS")
    lines.append("      1 lets native libraries' start-up chatter through to stderr (default: unset)")
    return "\n".join(lines)


def main(
    name: str,
    build: Build,
    *,
    description: str,
    reads: Sequence[str] = (),
    argv: Sequence[str] | None = None,
) -> NoReturn:
    """Entry point of ``python -m poise_<name>``: parse ``--help``, read settings, run, exit.

    ``reads`` names the settings this service uses besides the common ones (see settings_help).
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m poise_{name}",
        description=description,
        epilog=settings_help([*COMMON_SETTINGS, *reads]) + "\n\nSIGTERM or SIGINT drains and exits 0.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    try:
        settings = PoiseSettings()
    except ValidationError as exc:
        configure_logging("INFO")
        problems = "; ".join(
            "POISE_" + "__".join(str(p).upper() for p in error["loc"]) + f": {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        log.error("%s: invalid settings: %s", name, problems)
        sys.exit(EXIT_BAD_SETTINGS)
    configure_logging(settings.log_level)
    filter_native_stderr()
    sys.exit(asyncio.run(run_service(name, build, settings)))
