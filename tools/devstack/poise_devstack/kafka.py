"""A real single-node Apache Kafka broker (KRaft) on 127.0.0.1, from Maven Central jars.

No Debian or PyPI package ships the broker, so :func:`ensure_kafka_jars` lets Maven fetch the
jars named in ``tools/devstack/kafka/pom.xml`` once into a cache folder, and :class:`KafkaBroker`
runs ``kafka.Kafka`` from them with Java.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from poise_devstack.ports import LOCALHOST, free_ports, port_accepts
from poise_devstack.processes import ManagedProcess, StartupError
from poise_devstack.server import LocalServer

log = logging.getLogger(__name__)

_DEVSTACK = Path(__file__).resolve().parent.parent
REPO_ROOT = _DEVSTACK.parent.parent
KAFKA_POM = _DEVSTACK / "kafka" / "pom.xml"
LOG4J2_CONFIG = _DEVSTACK / "kafka" / "log4j2.xml"
STAMP_NAME = ".complete"
# A cold download is ~45 MB plus Maven's own plugins; a stalled network must not hang CI forever.
MAVEN_TIMEOUT_S = 600
# A local broker lives for a test run or a working day. The JVM's optimising compiler spends its
# first minutes under load recompiling the broker's hot code: measured, a young broker used 1.7 CPU
# s to carry 900 messages of 32 kB and came down to 0.85 s only after ten such rounds; with the
# quick compiler alone it used 0.76 s from the first round. On a laptop or a 2-core CI machine that
# CPU is taken from the services under test. A broker in service runs with the JVM's defaults.
JIT_OPTIONS = {"quick": ("-XX:TieredStopAtLevel=1",), "full": ()}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def default_cache_dir() -> Path:
    """``<repo>/.cache/kafka``: ignored by git, kept between runs."""
    return REPO_ROOT / ".cache" / "kafka"


def _pom_digest() -> str:
    # The stamp records which pom produced the jars, so a version bump in the pom re-downloads.
    return hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()


def _is_complete(cache_dir: Path, digest: str) -> bool:
    stamp = cache_dir / STAMP_NAME
    lib = cache_dir / "lib"
    return stamp.is_file() and stamp.read_text().strip() == digest and any(lib.glob("kafka_*.jar"))


def ensure_kafka_jars(cache_dir: Path | None = None) -> Path:
    """Make sure the Kafka broker jars are in ``cache_dir`` and return the folder that holds them.

    The first call runs ``mvn -q -B dependency:copy-dependencies`` (about 45 MB from Maven Central);
    later calls only check the stamp file. Maven downloads into a temporary sibling folder that is
    renamed into place after success, so an interrupted download never looks complete. Progress
    goes to stderr only, so the CLI's stdout stays a plain path.

    Args:
        cache_dir: where to keep the jars; default ``<repo>/.cache/kafka``.

    Returns:
        ``<cache_dir>/lib``, the folder to put on the Java class path as ``<lib>/*``.

    Raises:
        RuntimeError: Maven is not installed, or it failed (its output is in the message).
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    digest = _pom_digest()
    if _is_complete(cache_dir, digest):
        return cache_dir / "lib"
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    # Two pytest processes (or a test and `make up`) may ask at once: one downloads, the other waits.
    lock_path = cache_dir.parent / f".{cache_dir.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_complete(cache_dir, digest):
            return cache_dir / "lib"
        _download(cache_dir, digest)
    return cache_dir / "lib"


def _download(cache_dir: Path, digest: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(
            "Maven (`mvn`) is not on PATH; it is needed once to fetch the Kafka broker jars "
            "(Debian package `maven`, plus a Java 17 runtime, `openjdk-17-jre-headless`)"
        )
    staging = Path(tempfile.mkdtemp(prefix=f".{cache_dir.name}.tmp-", dir=cache_dir.parent))
    try:
        print(f"poise-devstack: fetching Kafka broker jars with Maven into {cache_dir} ...",
              file=sys.stderr, flush=True)
        cmd = [
            mvn, "-q", "-B", "dependency:copy-dependencies",
            f"-DoutputDirectory={staging / 'lib'}", "-DincludeScope=runtime", "-f", str(KAFKA_POM),
        ]
        # Maven's output goes to stderr in full: a CI log then shows why a download failed.
        try:
            result = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, check=False, timeout=MAVEN_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"Maven did not fetch the Kafka jars within {MAVEN_TIMEOUT_S} s "
                               "(is Maven Central reachable?)") from exc
        # Maven's console library writes bare colour resets even in batch mode.
        output = _ANSI.sub("", result.stdout.decode("utf-8", "replace"))
        if output.strip():
            sys.stderr.write(output)
        if result.returncode != 0 or not any((staging / "lib").glob("kafka_*.jar")):
            raise RuntimeError(
                f"`{' '.join(cmd)}` failed with status {result.returncode}:\n{output[-4000:]}")
        (staging / STAMP_NAME).write_text(digest + "\n")
        if cache_dir.exists():
            # A stale or half-written cache from an older pom or an interrupted run.
            shutil.rmtree(cache_dir)
        os.replace(staging, cache_dir)
        jars = len(list((cache_dir / "lib").glob("*.jar")))
        print(f"poise-devstack: {jars} Kafka jars ready in {cache_dir / 'lib'}",
              file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _server_properties(
    port: int, controller_port: int, data_dir: Path, extra: Mapping[str, str]
) -> dict[str, str]:
    """Single-node KRaft broker+controller settings for tests (see shared/notes/KAFKA.md)."""
    listeners = f"PLAINTEXT://{LOCALHOST}:{port},CONTROLLER://{LOCALHOST}:{controller_port}"
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{LOCALHOST}:{controller_port}",
        "listeners": listeners,
        "advertised.listeners": listeners,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "4",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        # Fewer internal partitions than the default 50: the first consumer group on a fresh
        # broker then waits for 4 partitions to be created, not 50, on a 2-core machine.
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Tests join a group and expect records at once, not after the default 3 s wait.
        "group.initial.rebalance.delay.ms": "0",
        # After a kill the restarted broker cannot register until the controller lets its old
        # session lapse: 9 s by default, 4 s here. Heartbeats stay on loopback inside one JVM, so
        # only a stall of several seconds would fence the broker.
        "broker.session.timeout.ms": "4000",
        "broker.heartbeat.interval.ms": "500",
        # Poise creates its topics explicitly; auto-creation stays on so ad-hoc tools just work.
        "auto.create.topics.enable": "true",
    }
    props.update(extra)
    return props


async def _cluster_ready(bootstrap: str) -> bool:
    """True when the broker answers metadata requests and lists itself as a live broker."""
    from aiokafka.admin import AIOKafkaAdminClient  # imported here: no work at import time

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
        cluster = await admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except Exception as exc:  # noqa: BLE001 - any failure just means "not yet"
        log.debug("kafka at %s not ready yet: %r", bootstrap, exc)
        return False
    finally:
        try:
            await admin.close()
        except Exception:  # noqa: BLE001 - closing a half-started client may fail; nothing to do
            pass


def _run_coroutine_in_thread(bootstrap: str) -> bool:
    # A fresh thread with its own event loop: start() must also work when called from a test that
    # already runs an event loop, where asyncio.run would refuse.
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(_cluster_ready(bootstrap))),
                              name="kafka-ready-probe", daemon=True)
    thread.start()
    thread.join(timeout=30)
    return bool(result and result[0])


class KafkaBroker(LocalServer):
    """One Apache Kafka broker+controller (KRaft) on 127.0.0.1, its data in a private folder.

    The folder, ports and cluster ID are fixed by the first :meth:`start`, so :meth:`stop` followed
    by :meth:`start`, or :meth:`restart`, brings the same broker back with its data: tests use that
    to take Kafka away in the middle of a run.

    Args:
        work_dir: folder for config, data and logs; default a new temporary folder, removed by
            :meth:`close` (and on leaving the ``with`` block). A given folder is kept.
        jars_dir: folder of Kafka jars; default :func:`ensure_kafka_jars`.
        port: client (PLAINTEXT) port; default a free one.
        controller_port: KRaft controller port; default a free one.
        heap: maximum JVM heap, as for ``-Xmx``.
        jit: ``"quick"`` (default) compiles the broker's code with the JVM's quick compiler only;
            ``"full"`` also lets the optimising compiler recompile hot code, as a broker in
            service would. See :data:`JIT_OPTIONS`.
        startup_timeout: seconds :meth:`start` waits for the broker to answer metadata requests.
        extra_properties: server.properties entries that override the defaults.
        java: the ``java`` executable.
    """

    def __init__(
        self,
        work_dir: Path | None = None,
        *,
        jars_dir: Path | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "768m",
        jit: str = "quick",
        startup_timeout: float = 90.0,
        extra_properties: Mapping[str, str] | None = None,
        java: str = "java",
    ) -> None:
        self._owns_work_dir = work_dir is None
        self._work_dir = Path(work_dir) if work_dir is not None else None
        self._jars_dir = Path(jars_dir) if jars_dir is not None else None
        self._port = port
        self._controller_port = controller_port
        if jit not in JIT_OPTIONS:
            raise ValueError(f"jit must be one of {', '.join(JIT_OPTIONS)}, got {jit!r}")
        self.heap = heap
        self.jit = jit
        self.startup_timeout = startup_timeout
        self.extra_properties = dict(extra_properties or {})
        self.java = java
        self._process: ManagedProcess | None = None
        self._formatted = False
        self.kind = "kafka broker"  # in log lines

    # -- properties ------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` for ``bootstrap_servers``; fixed after the first start."""
        if self._port is None:
            raise RuntimeError("the broker has no port yet: call start() first")
        return f"{LOCALHOST}:{self._port}"

    @property
    def port(self) -> int | None:
        """Client port, None before the first start when none was given."""
        return self._port

    @property
    def controller_port(self) -> int | None:
        """KRaft controller port, None before the first start when none was given."""
        return self._controller_port

    @property
    def log_path(self) -> Path:
        """The JVM's stdout and stderr."""
        return self._require_work_dir() / "logs" / "stdout.log"

    @property
    def server_log_path(self) -> Path:
        """Kafka's own log (WARN and above, see tools/devstack/kafka/log4j2.xml)."""
        return self._require_work_dir() / "logs" / "server.log"

    def is_running(self) -> bool:
        """True while the broker JVM runs."""
        return self._process is not None and self._process.is_running()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the JVM output and of Kafka's log, for error messages."""
        from poise_devstack.processes import tail_file

        return "\n".join([
            f"--- {self.log_path} ---", tail_file(self.log_path, lines),
            f"--- {self.server_log_path} ---", tail_file(self.server_log_path, lines),
        ])

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> KafkaBroker:
        """Start the broker and wait until it serves metadata.

        The first call picks ports, writes ``server.properties`` and formats the storage; later
        calls reuse all of it.

        Raises:
            StartupError: the JVM exited or did not become ready in ``startup_timeout`` s; the
                message has the last 40 lines of its logs. Nothing is left running.
        """
        if self.is_running():
            return self
        jars = self._jars_dir or ensure_kafka_jars()
        if not self._formatted:
            self._prepare(jars)
        assert self._port is not None and self._controller_port is not None
        for port in (self._port, self._controller_port):
            if port_accepts(LOCALHOST, port):
                raise StartupError(f"port {port} on {LOCALHOST} is taken by another process; "
                                   f"the Kafka broker in {self._work_dir} cannot come back on it")
        work = self._require_work_dir()
        self._process = ManagedProcess(
            [*self._java_cmd(jars), "kafka.Kafka", str(work / "server.properties")],
            log_path=self.log_path,
            cwd=work,
            name=f"kafka@{self._port}",
        )
        self._process.start()
        try:
            self._process.wait_until(
                lambda: port_accepts(LOCALHOST, self._port) and _run_coroutine_in_thread(self.bootstrap),
                self.startup_timeout,
                f"serving metadata on {self.bootstrap}",
                interval=0.25,
                extra_logs=[self.server_log_path],
            )
        except BaseException:
            self._process.kill()
            raise
        log.info("kafka broker ready on %s (pid %s)", self.bootstrap, self.pid)
        return self

    def _forget(self) -> None:
        self._formatted = False

    # -- internals -------------------------------------------------------------------------------

    def _require_work_dir(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("the broker has no folder yet: call start() first")
        return self._work_dir

    def _java_cmd(self, jars: Path) -> list[str]:
        if shutil.which(self.java) is None and not Path(self.java).is_file():
            raise StartupError(f"`{self.java}` not found: the Kafka broker needs a Java 17+ runtime "
                               "(Debian package `openjdk-17-jre-headless`)")
        logs = self._require_work_dir() / "logs"
        return [
            self.java, "-Xms256m", f"-Xmx{self.heap}", *JIT_OPTIONS[self.jit],
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={logs}",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            "-cp", f"{jars}/*",
        ]

    def _prepare(self, jars: Path) -> None:
        """Pick ports, write server.properties and format the storage (first start only)."""
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="poise-kafka-"))
        work = self._work_dir
        (work / "logs").mkdir(parents=True, exist_ok=True)
        if self._port is None or self._controller_port is None:
            picked = iter(free_ports(2))
            self._port = self._port or next(picked)
            self._controller_port = self._controller_port or next(picked)
        props = _server_properties(self._port, self._controller_port, work / "data",
                                   self.extra_properties)
        config = work / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in props.items()))
        if (work / "data" / "meta.properties").is_file():
            # A given work_dir that already holds a formatted log dir: reuse its cluster.
            self._formatted = True
            return
        cluster_id = self._storage_tool(jars, "random-uuid").strip().splitlines()[-1]
        self._storage_tool(jars, "format", "--standalone", "-t", cluster_id, "-c", str(config))
        self._formatted = True

    def _storage_tool(self, jars: Path, *args: str) -> str:
        cmd = [*self._java_cmd(jars), "kafka.tools.StorageTool", *args]
        result = subprocess.run(cmd, cwd=self._work_dir, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise StartupError(f"kafka.tools.StorageTool {' '.join(args)} failed with status "
                               f"{result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout
