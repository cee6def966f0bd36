"""A handler's failure is logged with its error code, never with its message.

The message of a database error quotes the statement and often its parameters (a candidate's
name, a transcript); its code (SQLite's error name, PostgreSQL's SQLSTATE, Triton's status) is
what an operator needs to tell a lock from a full disk, or a bad request from a server away.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid

import psycopg.errors
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from poise_common.bus import DeliveryPolicy, create_bus
from poise_common.bus.base import failure_label
from poise_common.messages import Envelope, FramesEnd

FAST = DeliveryPolicy(max_attempts=2, backoff_s=0.01, backoff_max_s=0.02)
CANDIDATE = "Dana Example-Candidate"


@pytest.fixture
def locked_database(tmp_path):
    """A SQLite file whose write lock another connection holds, and an engine that will not wait."""
    path = tmp_path / "poise.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE notes (who TEXT)")
    holder.execute("BEGIN IMMEDIATE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    yield engine
    holder.execute("ROLLBACK")
    holder.close()
    engine.dispose()


def test_a_locked_database_is_logged_by_its_code_through_the_bus(locked_database, caplog):
    def write() -> None:
        with locked_database.begin() as connection:
            connection.execute(text("INSERT INTO notes (who) VALUES (:who)"), {"who": CANDIDATE})

    async def scenario() -> None:
        bus = create_bus(f"memory://?partitions=1&prefix=t{uuid.uuid4().hex[:8]}.")
        await bus.start()
        handled = asyncio.Event()
        calls = 0

        async def handler(env: Envelope) -> None:
            nonlocal calls
            calls += 1
            if calls == FAST.max_attempts:
                handled.set()
            await asyncio.to_thread(write)

        await bus.subscribe(["notes"], "g", handler, FAST)
        await bus.publish("notes", Envelope(interview_id="i", answer_id="a", tenant="t", stream="frames", seq=0,
                                            payload=FramesEnd(count=0)))
        await asyncio.wait_for(handled.wait(), 20)
        # The last attempt's failure is logged after the handler returns.
        while not any("dead-lettering" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.01)
        await bus.stop()

    with caplog.at_level(logging.WARNING, logger="poise_common.bus"):
        asyncio.run(asyncio.wait_for(scenario(), 60))
    lines = [r.getMessage() for r in caplog.records]
    assert any("handler failed on" in line and line.endswith("OperationalError (SQLITE_BUSY)") for line in lines), lines
    assert any("dead-lettering" in line and line.endswith("OperationalError (SQLITE_BUSY)") for line in lines), lines
    assert not any(CANDIDATE in line or "INSERT" in line for line in caplog.text.splitlines())


def test_postgresql_errors_are_labelled_by_sqlstate_without_their_detail():
    driver = psycopg.errors.UniqueViolation(f'duplicate key value violates unique constraint "email" ({CANDIDATE})')
    wrapped = IntegrityError("INSERT INTO people (name) VALUES (%(name)s)", {"name": CANDIDATE}, driver)
    assert failure_label(wrapped) == "IntegrityError (23505)"
    assert failure_label(driver) == "UniqueViolation (23505)"


def test_inference_server_errors_are_labelled_by_status():
    from tritonclient.utils import InferenceServerException

    error = InferenceServerException(msg=f"face_landmarker: {CANDIDATE}", status="StatusCode.INTERNAL")
    assert failure_label(error) == "InferenceServerException (StatusCode.INTERNAL)"
    assert failure_label(InferenceServerException(msg="no status")) == "InferenceServerException"


def test_errors_without_a_code_are_labelled_by_type():
    assert failure_label(ValueError(CANDIDATE)) == "ValueError"
    assert failure_label(sqlite3.OperationalError("no code attached")) == "OperationalError"
