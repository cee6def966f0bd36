"""Fixtures shared by every test folder: where the real recordings are, and a private POISE_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
MEDIA = REPO.parent / "shared" / "media"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """The real recordings. Their absence is a broken checkout, so it fails rather than skips."""
    if not MEDIA.is_dir():
        pytest.fail(f"real media not found at {MEDIA}: tests need ../shared/media beside the repository")
    return MEDIA


@pytest.fixture()
def poise_home(tmp_path, monkeypatch) -> Path:
    """Each test gets its own local state folder."""
    home = tmp_path / "poise-home"
    home.mkdir()
    monkeypatch.setenv("POISE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def kafka_broker():
    """One real Apache Kafka broker for the whole test session, stopped by PID at the end.

    A test that asks for it and cannot get it fails: Kafka is part of what is tested.
    """
    from poise_devstack.kafka import KafkaBroker

    broker = KafkaBroker()
    try:
        broker.start()
    except Exception as exc:  # noqa: BLE001 - reported as the failure of the test that asked
        broker.close()
        pytest.fail(f"could not start the Kafka broker: {exc}")
    yield broker
    broker.close()


@pytest.fixture()
def sessions(tmp_path):
    """Sessions on a fresh SQLite database migrated to the newest schema."""
    from poise_common.db.engine import create_db_engine, session_factory, upgrade

    engine = create_db_engine(f"sqlite:///{tmp_path / 'poise.db'}")
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()
