"""Engines by URL dialect, and migrations run once at start-up."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers work while fusion writes; the busy timeout rides out short write locks;
    # SQLite ignores foreign keys (and so ON DELETE CASCADE) unless asked.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Deleted and overwritten rows are zeroed, not left in free space: erased candidate data must not linger.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700), for local state that holds candidates'
    data. One that exists already is left as it is (it may be shared on purpose) with a warning
    when others can enter it; the files Poise keeps in it are private anyway."""
    try:
        path.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("Poise's local state folder (POISE_HOME or the database's) is open to other users "
                        "(mode %o); `chmod 700` it", mode)
    return path


def _private_sqlite_files(database: Path) -> None:
    """The database file exists, mode 0600, before SQLite opens it: SQLite gives its -wal and -shm
    files the database file's mode. Files an earlier version left readable to others are made private."""
    database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # the caller warns of an open one
    os.close(os.open(database, os.O_RDWR | os.O_CREAT, 0o600))
    for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        try:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
        except FileNotFoundError:
            pass
        except PermissionError:  # another user's file: we may still be able to use it, but not to fix it
            log.warning("a database file is readable by other users and not ours to change; `chmod 600` it")


def create_db_engine(url: str) -> Engine:
    """An engine for ``url``. Its errors never quote a statement's parameters (``hide_parameters``):
    they are names, emails, candidate links and transcripts, and an error's text ends up in logs.
    A SQLite database's files are readable by their owner only (0600), in a folder made 0700."""
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            _private_sqlite_files(Path(database))
        engine = create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (a no-op when it is already there)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
