"""The service runner: a real ``python -m poise_nlp`` process, and the runner's order of start and stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
from fastapi import APIRouter

from poise_common.runtime import LineFormatter, ServiceParts, run_service, settings_help
from poise_common.settings import NlpSettings, PoiseSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(tmp_path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POISE_")}
    env.update(
        POISE_BUS_URL="memory://", POISE_HOME=str(tmp_path), POISE_NLP__PORT=str(port), POISE_HTTP_HOST="127.0.0.1"
    )
    env.update(extra)
    return env


def wait_for(url: str, process: subprocess.Popen, timeout_s: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered 200")


def test_nlp_process_serves_health_and_metrics_and_drains_on_sigterm(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "poise_nlp"], env=service_env(tmp_path, port),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(f"{base}/healthz", process).json() == {"status": "ok"}
        assert wait_for(f"{base}/readyz", process).json() == {"status": "ready"}
        metrics = httpx.get(f"{base}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert "poise_nlp_messages_consumed_total" in metrics.text
        assert "poise_nlp_process_start_time_seconds" in metrics.text
        assert "poise_nlp_ready 1.0" in metrics.text
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate()
    assert code == 0, stderr
    lines = stderr.strip().splitlines()
    assert any("nlp ready" in line for line in lines)
    assert "exit_status=0" in lines[-1]


def test_a_start_failure_is_one_error_line_and_a_nonzero_exit(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "poise_nlp"], env=service_env(tmp_path, free_port(), POISE_BUS_URL="carrier-pigeon://"),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "nlp failed to start" in errors[0] and "carrier-pigeon" in errors[0]


def test_help_lists_the_settings_it_reads(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "poise_nlp", "--help"], env=service_env(tmp_path, 1),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0
    for name in ("POISE_BUS_URL", "POISE_HTTP_HOST", "POISE_LOG_LEVEL", "POISE_NLP__PORT"):
        assert name in result.stdout


def test_settings_help_reads_fields_sections_and_single_fields():
    text = settings_help(["bus_url", "fusion", "nlp.min_words_for_scoring"])
    assert "POISE_BUS_URL" in text and "POISE_FUSION__DEFAULT_ROLE" in text
    assert "POISE_NLP__MIN_WORDS_FOR_SCORING" in text and "POISE_NLP__PORT" not in text


class Recorder:
    """A service object that records its lifecycle; its start can be held back."""

    def __init__(self, events: list[str], name: str, release: asyncio.Event | None = None, fail: bool = False):
        self.events, self.name, self.release, self.fail = events, name, release, fail

    async def start(self) -> None:
        if self.release is not None:
            await self.release.wait()
        if self.fail:
            raise FileNotFoundError("model file missing")
        self.events.append(f"start {self.name}")

    async def stop(self) -> None:
        self.events.append(f"stop {self.name}")


def settings_on(port: int) -> PoiseSettings:
    return PoiseSettings(bus_url="memory://", http_host="127.0.0.1", nlp=NlpSettings(port=port))


def test_ready_only_once_started_and_requests_drain_before_the_service_stops():
    port = free_port()
    events: list[str] = []
    release, in_request, finish_request, stop = (asyncio.Event() for _ in range(4))

    router = APIRouter()

    @router.get("/v1/slow")
    async def slow() -> dict:
        in_request.set()
        await finish_request.wait()
        events.append("request done")
        return {"ok": True}

    async def build(settings, bus, registry) -> ServiceParts:
        return ServiceParts(
            services=[Recorder(events, "a", release), Recorder(events, "b")],
            routers=[router],
            close=[lambda: events.append("closed")],
        )

    async def scenario():
        runner = asyncio.create_task(run_service("nlp", build, settings_on(port), stop=stop))
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            while True:
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            seen = {"starting": (await client.get("/readyz")).status_code,
                    "api_starting": (await client.get("/v1/slow")).status_code}
            release.set()
            while (await client.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.05)
            request = asyncio.create_task(client.get("/v1/slow"))
            await in_request.wait()
            stop.set()
            await asyncio.sleep(0.3)
            seen["stopping"] = (await client.get("/readyz")).status_code
            seen["api_stopping"] = (await client.get("/v1/slow")).status_code
            seen["events_while_draining"] = list(events)
            finish_request.set()
            seen["request"] = (await request).status_code
        seen["code"] = await runner
        return seen

    seen = asyncio.run(scenario())
    assert seen["starting"] == 503 and seen["api_starting"] == 503
    assert seen["stopping"] == 503 and seen["api_stopping"] == 503
    assert seen["events_while_draining"] == ["start a", "start b"]  # nothing stops under a running request
    assert seen["request"] == 200 and seen["code"] == 0
    assert events == ["start a", "start b", "request done", "stop b", "stop a", "closed"]


def test_a_failed_start_stops_what_had_started_and_runs_close():
    events: list[str] = []

    async def build(settings, bus, registry) -> ServiceParts:
        return ServiceParts(
            services=[Recorder(events, "a"), Recorder(events, "b", fail=True), Recorder(events, "c")],
            close=[lambda: events.append("closed")],
        )

    code = asyncio.run(run_service("nlp", build, settings_on(free_port())))
    assert code == 1
    assert events == ["start a", "stop a", "closed"]


def test_a_taken_port_fails_the_start():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def build(settings, bus, registry) -> ServiceParts:
            raise AssertionError("never built")

        assert asyncio.run(run_service("nlp", build, settings_on(port))) == 1


def test_log_lines_are_single_lines_with_fields_and_private_fields_redacted():
    formatter = LineFormatter()
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord("poise.x", logging.ERROR, __file__, 1, "answer %s failed", ("a1",), sys.exc_info())
    record.interview_id = "abc"
    record.path = "/media/jane-doe/answer.mp4"
    record.note = "two words"
    line = formatter.format(record)
    assert "\n" not in line
    assert " ERROR poise.x: answer a1 failed interview_id=abc path=[redacted] note=\"two words\" exc=" in line
    assert "jane-doe" not in line


def test_a_database_error_is_logged_by_type_code_and_place_never_by_its_values(tmp_path):
    from sqlalchemy import text

    from poise_common.db.engine import create_db_engine

    engine = create_db_engine(f"sqlite:///{tmp_path / 'poise.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE people (email TEXT UNIQUE)"))
        connection.execute(text("INSERT INTO people VALUES (:email)"), {"email": "janet@example.com"})
    try:
        with engine.begin() as connection:  # a second row with the same email breaks the unique index
            connection.execute(text("INSERT INTO people VALUES (:email)"), {"email": "janet@example.com"})
    except Exception:  # noqa: BLE001 - the record is what is tested
        record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application",
                                   (), sys.exc_info())
    finally:
        engine.dispose()
    line = LineFormatter().format(record)
    assert "janet" not in line and "INSERT" not in line, line
    assert "exc=\"IntegrityError (SQLITE_CONSTRAINT_UNIQUE) at " in line, line
    assert "tests/test_runtime.py:" in line  # where it was raised from this test
    assert "; from IntegrityError (SQLITE_CONSTRAINT_UNIQUE) at " in line  # the driver's own, chained
    # The engine's own message no longer quotes the values either (they reach other places too).
    assert "janet" not in str(record.exc_info[1])


def test_an_exception_message_never_reaches_the_line_but_its_chain_does():
    try:
        try:
            raise KeyError("Janet Q <janet@example.com>")
        except KeyError as inner:
            raise RuntimeError("could not invite Janet Q") from inner
    except RuntimeError:
        record = logging.LogRecord("poise.x", logging.ERROR, __file__, 1, "invite failed", (), sys.exc_info())
    line = LineFormatter().format(record)
    assert "Janet" not in line and "janet" not in line
    assert "exc=\"RuntimeError at tests/test_runtime.py:" in line
    assert "; from KeyError at tests/test_runtime.py:" in line
