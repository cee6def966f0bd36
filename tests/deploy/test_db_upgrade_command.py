"""``python -m poise_common.db upgrade``: the migration Job's command, run for real on SQLite."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from alembic.config import Config
from alembic.script import ScriptDirectory

from poise_common.db.engine import MIGRATIONS


def upgrade(database_url: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POISE_")}
    env["POISE_DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "poise_common.db", "upgrade"], env=env, capture_output=True,
                          text=True, timeout=300)


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def test_upgrade_brings_a_new_database_to_the_newest_schema_and_repeats_harmlessly(tmp_path):
    path = tmp_path / "poise.db"
    first = upgrade(f"sqlite:///{path}")
    assert first.returncode == 0, first.stderr
    with sqlite3.connect(path) as db:
        (revision,) = db.execute("select version_num from alembic_version").fetchone()
        tables = {row[0] for row in db.execute("select name from sqlite_master where type = 'table'")}
    assert revision == head_revision()
    assert {"interviews", "api_keys"} <= tables
    again = upgrade(f"sqlite:///{path}")
    assert again.returncode == 0, again.stderr
    assert f"schema revision {revision}" in again.stderr


def test_an_unreachable_database_fails_without_showing_the_password():
    done = upgrade("postgresql+psycopg://poise:s3cret-pw@127.0.0.1:1/poise?connect_timeout=2")
    assert done.returncode == 1
    assert "failed" in done.stderr and "s3cret-pw" not in done.stderr


def test_a_malformed_url_is_a_settings_error_without_showing_it():
    done = upgrade("not a url with s3cret-pw")
    assert done.returncode == 2
    assert "POISE_DATABASE_URL" in done.stderr and "s3cret-pw" not in done.stderr
