"""A throwaway PostgreSQL server on 127.0.0.1 from the Debian server binaries.

PostgreSQL refuses to run as root, so when this process is root the cluster is created and run as
an unprivileged system user (``postgres``, which the Debian package creates) and its folder is
handed to that user. The database superuser is always ``postgres`` with trust authentication on
127.0.0.1, so URLs carry no password.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import psycopg
from psycopg import sql

from poise_devstack.ports import LOCALHOST, free_port, port_accepts
from poise_devstack.server import LocalServer
from poise_devstack.processes import ManagedProcess, StartupError

log = logging.getLogger(__name__)

DEFAULT_OS_USER = "postgres"
SUPERUSER = "postgres"
_DEBIAN_HINT = "install the Debian package `postgresql` (it provides initdb and postgres)"
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def find_pg_bindir() -> Path:
    """The folder holding ``initdb`` and ``postgres``.

    ``pg_config --bindir`` first (it names the installed server's version); else the highest
    version under ``/usr/lib/postgresql/*/bin``.

    Raises:
        RuntimeError: no PostgreSQL server binaries are installed.
    """
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                check=False)
        candidate = Path(result.stdout.strip())
        # libpq-dev's pg_config may name a folder without the server binaries.
        if result.returncode == 0 and _has_server(candidate):
            return candidate
    versions = []
    for path in Path("/usr/lib/postgresql").glob("*/bin"):
        try:
            versions.append((float(path.parent.name), path))
        except ValueError:
            continue
    for _, path in sorted(versions, reverse=True):
        if _has_server(path):
            return path
    raise RuntimeError(f"PostgreSQL server binaries not found (no initdb/postgres): {_DEBIAN_HINT}")


def _has_server(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "postgres").is_file()


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    """The system user the server runs as when we are root; created if it is missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise RuntimeError(f"system user {name!r} is missing and `useradd` is not available; {_DEBIAN_HINT}")
    log.warning("creating system user %s to run PostgreSQL (it refuses to run as root)", name)
    subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    return pwd.getpwnam(name)


class PostgresServer(LocalServer):
    """One PostgreSQL cluster in a private folder, serving 127.0.0.1 on a free port.

    Args:
        work_dir: folder for the cluster (``data/``) and its log; default a new temporary folder,
            removed by :meth:`close` (and on leaving the ``with`` block). A given folder is kept.
        port: TCP port; default a free one, fixed by the first :meth:`start`.
        database: database created at the first start and named in :attr:`url`.
        fsync: keep PostgreSQL's durability settings. Off by default: a test cluster need not
            survive a power cut, and fsync makes every commit wait on the disk.
        os_user: system user to run as when this process is root (default ``postgres``);
            ignored otherwise.
        bindir: folder with ``initdb`` and ``postgres``; default :func:`find_pg_bindir`.
        settings: extra ``postgresql.conf`` entries (values written as given, so quote strings).
        startup_timeout: seconds :meth:`start` waits for the server to accept connections.
    """

    kind = "postgres"
    stop_timeout = 30.0

    def __init__(
        self,
        work_dir: Path | None = None,
        *,
        port: int | None = None,
        database: str = "poise",
        fsync: bool = False,
        os_user: str | None = None,
        bindir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        _check_db_name(database)
        self._owns_work_dir = work_dir is None
        self._work_dir = Path(work_dir) if work_dir is not None else None
        self._port = port
        self.database = database
        self.fsync = fsync
        self.os_user = os_user
        self._bindir = Path(bindir) if bindir is not None else None
        self.settings = dict(settings or {})
        self.startup_timeout = startup_timeout
        self._process: ManagedProcess | None = None
        self._initialised = False

    # -- properties ------------------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """TCP port, None before the first start when none was given."""
        return self._port

    @property
    def data_dir(self) -> Path:
        """The PostgreSQL data directory."""
        return self._require_work_dir() / "data"

    @property
    def log_path(self) -> Path:
        """The server's stderr log."""
        return self._require_work_dir() / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of :attr:`database`: ``postgresql+psycopg://postgres@127.0.0.1:PORT/DB``."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of another database on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@{LOCALHOST}:{self._require_port()}/{database}"

    def dsn(self, database: str | None = None) -> str:
        """libpq URL for ``psycopg.connect`` (default: :attr:`database`)."""
        return f"postgresql://{SUPERUSER}@{LOCALHOST}:{self._require_port()}/{database or self.database}"

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log."""
        from poise_devstack.processes import tail_file

        return tail_file(self.log_path, lines)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """Start the server and wait until it accepts connections.

        The first call runs initdb and creates :attr:`database`; later calls reuse the cluster.

        Raises:
            RuntimeError: no server binaries (the message names the Debian package).
            StartupError: initdb failed, or the server exited or did not accept connections in
                time (the message has its log tail). Nothing is left running.
        """
        if self.is_running():
            return self
        bindir = self._bindir or find_pg_bindir()
        if not _has_server(bindir):
            raise RuntimeError(f"no initdb/postgres in {bindir}: {_DEBIAN_HINT}")
        run_as = self._run_as()
        if not self._initialised:
            self._initdb(bindir, run_as)
        port = self._require_port()
        if port_accepts(LOCALHOST, port):
            raise StartupError(f"port {port} on {LOCALHOST} is taken by another process")
        self._process = ManagedProcess(
            # -p wins over postgresql.conf, so a reused work_dir serves on the port chosen now.
            [bindir / "postgres", "-D", self.data_dir, "-p", str(port)],
            log_path=self.log_path,
            cwd=self._require_work_dir(),
            user=run_as,
            name=f"postgres@{port}",
            # SIGINT is PostgreSQL's fast shutdown (roll back sessions, checkpoint, exit); the
            # postmaster passes it on to its children itself.
            stop_signal=signal.SIGINT,
            signal_group=False,
        )
        self._process.start()
        try:
            self._process.wait_until(self._accepts_sessions, self.startup_timeout,
                                     f"accepting connections on {LOCALHOST}:{port}", interval=0.1)
            if not self._database_exists(self.database):
                self.create_database(self.database)
        except BaseException:
            self._process.kill()
            raise
        log.info("postgres ready on %s:%d (pid %s)", LOCALHOST, port, self.pid)
        return self

    def _forget(self) -> None:
        self._initialised = False

    # -- databases -------------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create an empty database (e.g. one per test) and return its SQLAlchemy URL.

        Raises:
            ValueError: ``name`` is not a plain identifier (letters, digits, underscore).
            psycopg.errors.DuplicateDatabase: it exists already.
        """
        _check_db_name(name)
        # CREATE DATABASE cannot run inside a transaction block, hence autocommit.
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database if it exists, closing its sessions first."""
        _check_db_name(name)
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    # -- internals -------------------------------------------------------------------------------

    def _require_work_dir(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("the server has no folder yet: call start() first")
        return self._work_dir

    def _require_port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server has no port yet: call start() first")
        return self._port

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        return _ensure_os_user(self.os_user or DEFAULT_OS_USER).pw_name

    def _initdb(self, bindir: Path, run_as: str | None) -> None:
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="poise-pg-"))
        work = self._work_dir
        work.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = free_port()
        user_kwargs: dict[str, object] = {}
        if run_as is not None:
            entry = pwd.getpwnam(run_as)
            # initdb insists the data directory belongs to the user that runs the server.
            os.chown(work, entry.pw_uid, entry.pw_gid)
            user_kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        if (self.data_dir / "PG_VERSION").is_file():
            # A given work_dir that already holds a cluster: reuse it.
            self._initialised = True
            return
        cmd = [str(bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
               "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        result = subprocess.run(cmd, cwd=work, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=120, check=False, **user_kwargs)  # type: ignore[call-overload]
        if result.returncode != 0:
            hint = (f" (it runs as system user {run_as!r}: {work} and every folder above it must be "
                    "reachable by that user)" if run_as else "")
            raise StartupError(f"initdb failed with status {result.returncode}{hint}:\n"
                               f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# poise_devstack\n")
            for key, value in self._conf_entries().items():
                conf.write(f"{key} = {value}\n")
        self._initialised = True

    def _conf_entries(self) -> dict[str, str]:
        entries = {
            "listen_addresses": f"'{LOCALHOST}'",
            "port": str(self._require_port()),
            # In the data dir, not /var/run/postgresql: that needs root and may hold a system server.
            "unix_socket_directories": f"'{self.data_dir}'",
            # Several Poise services with connection pools plus per-test databases.
            "max_connections": "200",
        }
        if not self.fsync:
            entries.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        entries.update(self.settings)
        return entries

    def _accepts_sessions(self) -> bool:
        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _database_exists(self, name: str) -> bool:
        with psycopg.connect(self.dsn("postgres")) as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None


def _check_db_name(name: str) -> None:
    # Plain identifiers only, so a name is the same quoted or not and fits in a URL as is.
    if not _DB_NAME.match(name):
        raise ValueError(f"database name {name!r} must be letters, digits and underscores (max 63), "
                         "not starting with a digit")
