"""``python -m poise_common.db upgrade``: bring the database the settings name to the newest schema.

For deployments that migrate once before the services start (the Helm chart's pre-install and
pre-upgrade Job) and then run every service with ``POISE_MIGRATE_ON_START=false``, so that
replicas starting together never race each other through the migrations.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

log = logging.getLogger("poise_common.db")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_SETTINGS = 2


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at; None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_database(url: str) -> str | None:
    """Migrate the database at ``url`` to the newest revision and return that revision."""
    from poise_common.db.engine import create_db_engine, upgrade

    engine = create_db_engine(url)
    try:
        upgrade(engine)
        return current_revision(engine)
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m poise_common.db",
        description="Database schema commands. The database is POISE_DATABASE_URL (unset: SQLite under POISE_HOME).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("upgrade", help="apply every migration not yet applied (a no-op when up to date)")
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin, every run

    from poise_common.settings import PoiseSettings

    try:
        settings = PoiseSettings()
    except ValidationError as exc:
        # Names only: a value could be the database URL with its password.
        names = sorted({"POISE_" + "__".join(str(p).upper() for p in e["loc"]) for e in exc.errors()})
        log.error("invalid settings: %s", ", ".join(names))
        return EXIT_BAD_SETTINGS
    url = settings.resolved_database_url
    try:
        dialect = make_url(url).get_backend_name()
    except ArgumentError:  # its message would repeat the URL, password included
        log.error("POISE_DATABASE_URL is not a database URL")
        return EXIT_BAD_SETTINGS
    try:
        revision = upgrade_database(url)
    except Exception as exc:  # noqa: BLE001 - one line and a non-zero status for the Job's retries
        # The driver's own error (connection refused, authentication failed) without SQLAlchemy's
        # statement dump; drivers do not repeat the password.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""]
        log.error("migration of the %s database failed: %s: %s", dialect, type(exc).__name__, reason[0][:300])
        return EXIT_FAILED
    log.info("the %s database is at schema revision %s", dialect, revision)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
