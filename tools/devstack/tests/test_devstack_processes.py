"""ManagedProcess, the port helpers and the Kafka jar cache, with small local programs only."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from poise_devstack import kafka
from poise_devstack.ports import LOCALHOST, free_port, free_ports, port_accepts, wait_for_port
from poise_devstack.processes import ManagedProcess, StartupError, pid_exists

PY = sys.executable


def _alive(pid: int) -> bool:
    """Exists and is not a zombie: in a container PID 1 may never reap orphans."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


# -- ports -----------------------------------------------------------------------------------------


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind((LOCALHOST, port))
    assert len(set(free_ports(5))) == 5


def test_wait_for_port_times_out_on_a_closed_port() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=str(port)):
        wait_for_port(LOCALHOST, port, timeout=0.3)
    assert time.monotonic() - started < 5


# -- ManagedProcess --------------------------------------------------------------------------------


def test_http_server_healthy_then_terminated(tmp_path: Path) -> None:
    port = free_port()
    proc = ManagedProcess(
        [PY, "-m", "http.server", str(port), "--bind", LOCALHOST, "--directory", str(tmp_path)],
        log_path=tmp_path / "http.log",
        name="http",
    )
    proc.start()
    try:
        proc.wait_healthy(f"http://{LOCALHOST}:{port}/", timeout=30)
        pid = proc.pid
        assert pid is not None and pid_exists(pid) and proc.is_running()
        wait_for_port(LOCALHOST, port, timeout=5)
    finally:
        code = proc.terminate(timeout=10)
    assert code == -signal.SIGTERM
    assert not pid_exists(pid)
    assert not proc.is_running() and proc.pid is None
    assert not port_accepts(LOCALHOST, port)
    assert proc.terminate() == code  # idempotent
    assert "GET /" in proc.log_tail()


def test_env_reaches_the_process_and_log_tail(tmp_path: Path) -> None:
    script = "import os\nfor i in range(100): print(i)\nprint(os.environ['POISE_DEVSTACK_PROBE'])"
    proc = ManagedProcess([PY, "-c", script], log_path=tmp_path / "env.log",
                          env={"POISE_DEVSTACK_PROBE": "marker-42"})
    proc.start()
    assert proc.wait(timeout=30) == 0
    assert proc.log_tail(2).splitlines() == ["99", "marker-42"]


def test_wait_healthy_fails_fast_when_the_process_exits(tmp_path: Path) -> None:
    proc = ManagedProcess([PY, "-c", "print('boom: bad config'); raise SystemExit(3)"],
                          log_path=tmp_path / "boom.log", name="boom")
    proc.start()
    started = time.monotonic()
    with pytest.raises(StartupError, match="(?s)exited with status 3.*boom: bad config"):
        proc.wait_healthy(f"http://{LOCALHOST}:{free_port()}/health", timeout=60)
    assert time.monotonic() - started < 30
    proc.terminate()


def test_terminate_escalates_to_sigkill(tmp_path: Path) -> None:
    script = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "print('ready', flush=True)\ntime.sleep(600)")
    proc = ManagedProcess([PY, "-c", script], log_path=tmp_path / "stubborn.log")
    proc.start()
    # Only once the handler is installed does SIGTERM get ignored.
    proc.wait_until(lambda: "ready" in proc.log_tail(), timeout=30, what="ready")
    assert proc.terminate(timeout=1) == -signal.SIGKILL


def test_kill_takes_the_whole_process_group(tmp_path: Path) -> None:
    child_pid_file = tmp_path / "child.pid"
    proc = ManagedProcess(["bash", "-c", f"sleep 600 & echo $! > {child_pid_file}; wait"],
                          log_path=tmp_path / "group.log")
    proc.start()
    proc.wait_until(lambda: child_pid_file.is_file() and child_pid_file.read_text().strip() != "",
                    timeout=30, what="started its child")
    child = int(child_pid_file.read_text())
    leader = proc.pid
    assert leader is not None
    assert proc.kill() == -signal.SIGKILL
    assert not pid_exists(leader)
    # The orphaned child is reaped by init asynchronously; give it a moment.
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_start_twice_is_refused(tmp_path: Path) -> None:
    with ManagedProcess([PY, "-c", "import time; time.sleep(600)"], log_path=tmp_path / "x.log") as proc:
        with pytest.raises(RuntimeError, match="already running"):
            proc.start()
    assert not proc.is_running()


# -- Kafka jar cache (a fake `mvn`, so no network) -------------------------------------------------


@pytest.fixture()
def fake_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `mvn` on PATH that writes one jar, counts its runs, and fails when FAKE_MVN_FAIL is set."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "mvn-calls"
    script = bindir / "mvn"
    script.write_text(
        "#!/bin/sh\n"
        f"echo run >> {calls}\n"
        'if [ -n "$FAKE_MVN_FAIL" ]; then echo "Could not resolve dependencies" >&2; exit 1; fi\n'
        'for arg in "$@"; do case "$arg" in -DoutputDirectory=*) out="${arg#-DoutputDirectory=}";; esac; done\n'
        'mkdir -p "$out" && echo jar > "$out/kafka_2.13-0.0.0.jar"\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("FAKE_MVN_FAIL", raising=False)
    return calls


def test_jars_downloaded_once(tmp_path: Path, fake_mvn: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache" / "kafka"
    lib = kafka.ensure_kafka_jars(cache)
    assert lib == cache / "lib"
    assert (lib / "kafka_2.13-0.0.0.jar").is_file()
    assert (cache / kafka.STAMP_NAME).is_file()
    assert kafka.ensure_kafka_jars(cache) == lib
    assert fake_mvn.read_text().count("run") == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # progress goes to stderr only
    assert "Kafka" in captured.err
    # Nothing but the cache and its lock beside it: the staging folder was renamed away.
    assert sorted(p.name for p in cache.parent.iterdir()) == [".kafka.lock", "kafka"]


def test_failed_download_never_looks_complete(tmp_path: Path, fake_mvn: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache" / "kafka"
    monkeypatch.setenv("FAKE_MVN_FAIL", "1")
    with pytest.raises(RuntimeError, match="Could not resolve dependencies"):
        kafka.ensure_kafka_jars(cache)
    assert not cache.exists()
    assert sorted(p.name for p in cache.parent.iterdir()) == [".kafka.lock"]
    monkeypatch.delenv("FAKE_MVN_FAIL")
    assert (kafka.ensure_kafka_jars(cache) / "kafka_2.13-0.0.0.jar").is_file()


def test_unstamped_cache_is_downloaded_again(tmp_path: Path, fake_mvn: Path) -> None:
    cache = tmp_path / "kafka"
    (cache / "lib").mkdir(parents=True)
    (cache / "lib" / "kafka_2.13-half.jar").write_text("truncated")
    lib = kafka.ensure_kafka_jars(cache)
    assert sorted(p.name for p in lib.iterdir()) == ["kafka_2.13-0.0.0.jar"]
    assert fake_mvn.read_text().count("run") == 1


def test_missing_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="mvn"):
        kafka.ensure_kafka_jars(tmp_path / "kafka")


def test_cli_prints_only_the_jar_folder(tmp_path: Path, fake_mvn: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from poise_devstack.__main__ import main

    cache = tmp_path / "kafka"
    assert main(["kafka-jars", "--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out == f"{cache / 'lib'}\n"
