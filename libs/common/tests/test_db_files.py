"""The SQLite database and its folder are private to their owner: they hold candidates' data."""

from __future__ import annotations

import logging
import os
import stat

from sqlalchemy import text

from poise_common.db.engine import create_db_engine, private_dir


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_a_row(url: str):
    """(an open connection, its engine): while a connection is open, the -wal and -shm files exist."""
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE IF NOT EXISTS t (x TEXT)"))
            connection.execute(text("INSERT INTO t VALUES ('Janet')"))
        return engine.connect(), engine
    except BaseException:
        engine.dispose()
        raise


def test_a_new_database_its_wal_and_shm_and_its_folder_are_private_under_a_permissive_umask(tmp_path):
    home = tmp_path / "home"
    old_umask = os.umask(0o022)
    try:
        connection, engine = write_a_row(f"sqlite:///{home / 'poise.db'}")
    finally:
        os.umask(old_umask)
    try:
        files = {p.name: mode(p) for p in home.iterdir()}
        assert files == {"poise.db": 0o600, "poise.db-wal": 0o600, "poise.db-shm": 0o600}
        assert mode(home) == 0o700
    finally:
        connection.close()
        engine.dispose()


def test_database_files_left_readable_by_an_earlier_version_are_made_private(tmp_path):
    connection, engine = write_a_row(f"sqlite:///{tmp_path / 'poise.db'}")
    connection.close()
    engine.dispose()
    for name in ("poise.db", "poise.db-wal", "poise.db-shm"):
        (tmp_path / name).touch()
        os.chmod(tmp_path / name, 0o644)
    connection, engine = write_a_row(f"sqlite:///{tmp_path / 'poise.db'}")
    try:
        assert {p.name: mode(p) for p in tmp_path.glob("poise.db*")} == {
            "poise.db": 0o600, "poise.db-wal": 0o600, "poise.db-shm": 0o600}
    finally:
        connection.close()
        engine.dispose()


def test_an_existing_folder_open_to_others_is_kept_with_a_warning(tmp_path, caplog):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    with caplog.at_level(logging.WARNING, logger="poise_common.db.engine"):
        private_dir(shared)
    assert mode(shared) == 0o755
    assert "open to other users (mode 755)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="poise_common.db.engine"):
        private_dir(tmp_path / "new" / "home")
    assert mode(tmp_path / "new" / "home") == 0o700 and caplog.text == ""
