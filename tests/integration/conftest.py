"""Integration tests import their small helpers from this folder; the PostgreSQL server they share."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1, stopped by PID after the module's tests."""
    from poise_devstack.postgres import PostgresServer

    server = PostgresServer()
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - a test that needs PostgreSQL fails without it
        server.close()
        pytest.fail(f"could not start PostgreSQL: {exc}")
    yield server
    server.close()
