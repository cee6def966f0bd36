"""A real Kafka broker and a real PostgreSQL server: start, use, stop, restart, nothing left behind.

These tests fail (never skip) when Java, Maven or the PostgreSQL binaries are missing: the
integration tests depend on exactly these servers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from poise_devstack.kafka import KafkaBroker
from poise_devstack.ports import LOCALHOST, port_accepts
from poise_devstack.postgres import PostgresServer
from poise_devstack.processes import StartupError, pid_exists


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# -- Kafka -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_broker() -> Iterator[KafkaBroker]:
    """A broker of this module's own (not the session one in conftest.py): these tests stop and
    kill it, and start it again before they return."""
    broker = KafkaBroker()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, *values: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, group: str, count: int, timeout: float = 30.0) -> list[bytes]:
    """Read ``count`` records as ``group`` and commit them; fewer if the timeout runs out."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(values) < count and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                values.extend(record.value for record in records)
        await consumer.commit()
    finally:
        await consumer.stop()
    return values


def test_kafka_produce_and_consume(own_broker: KafkaBroker) -> None:
    topic = _unique("devstack_roundtrip")
    asyncio.run(_create_topic(own_broker.bootstrap, topic))
    asyncio.run(_produce(own_broker.bootstrap, topic, b"hello"))
    assert asyncio.run(_consume(own_broker.bootstrap, topic, _unique("g"), 1)) == [b"hello"]


def test_kafka_stop_then_start_keeps_records_and_offsets(own_broker: KafkaBroker) -> None:
    bootstrap = own_broker.bootstrap
    topic, group = _unique("devstack_restart"), _unique("g")
    asyncio.run(_create_topic(bootstrap, topic))
    asyncio.run(_produce(bootstrap, topic, b"before"))
    assert asyncio.run(_consume(bootstrap, topic, group, 1)) == [b"before"]

    old_pid = own_broker.pid
    assert old_pid is not None and pid_exists(old_pid)
    own_broker.stop()
    assert own_broker.pid is None
    assert not own_broker.is_running()
    assert not pid_exists(old_pid)
    assert not port_accepts(LOCALHOST, own_broker.port or 0)
    own_broker.stop()  # idempotent

    own_broker.start()
    assert own_broker.bootstrap == bootstrap
    assert own_broker.pid not in (None, old_pid)
    # The record survived, for a new group reading from the start ...
    assert asyncio.run(_consume(bootstrap, topic, _unique("g"), 1)) == [b"before"]
    # ... and so did the committed offset: the old group sees only what came after.
    asyncio.run(_produce(bootstrap, topic, b"after"))
    assert asyncio.run(_consume(bootstrap, topic, group, 1)) == [b"after"]


def test_kafka_restart_after_kill(own_broker: KafkaBroker) -> None:
    bootstrap = own_broker.bootstrap
    topic = _unique("devstack_crash")
    asyncio.run(_create_topic(bootstrap, topic))
    asyncio.run(_produce(bootstrap, topic, b"one", b"two"))

    old_pid = own_broker.pid
    assert old_pid is not None
    own_broker.kill()
    assert not pid_exists(old_pid)
    own_broker.restart()
    assert own_broker.bootstrap == bootstrap
    assert asyncio.run(_consume(bootstrap, topic, _unique("g"), 2)) == [b"one", b"two"]


def test_kafka_context_manager_leaves_nothing(own_broker: KafkaBroker) -> None:
    # A second broker beside the module one: each gets its own ports and folder.
    with KafkaBroker() as broker:
        pid, work_dir = broker.pid, broker.work_dir
        assert broker.bootstrap != own_broker.bootstrap
        assert pid is not None and pid_exists(pid)
        assert work_dir is not None and (work_dir / "data" / "meta.properties").is_file()
    assert not pid_exists(pid)
    assert not work_dir.exists()
    assert broker.pid is None


def _jvm_options(pid: int) -> list[str]:
    """The running JVM's command line (it refuses to start on an option it does not know)."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_kafka_compiles_with_the_quick_compiler_unless_told_otherwise(own_broker: KafkaBroker) -> None:
    assert own_broker.pid is not None
    assert "-XX:TieredStopAtLevel=1" in _jvm_options(own_broker.pid)
    with KafkaBroker(jit="full") as broker:
        assert broker.pid is not None
        options = _jvm_options(broker.pid)
        assert "kafka.Kafka" in options
        assert not [option for option in options if "TieredStopAtLevel" in option]
    with pytest.raises(ValueError, match="jit must be one of quick, full"):
        KafkaBroker(jit="fast")


def test_kafka_bad_config_fails_with_the_reason() -> None:
    broker = KafkaBroker(extra_properties={"num.partitions": "many"})
    try:
        with pytest.raises(StartupError, match="Invalid value many for configuration num.partitions"):
            broker.start()
        assert broker.pid is None
    finally:
        broker.close()


def test_kafka_not_ready_in_time_leaves_nothing_running() -> None:
    broker = KafkaBroker(startup_timeout=0.5)
    try:
        with pytest.raises(StartupError, match="not serving metadata .* within 0.5 s"):
            broker.start()
        assert broker.pid is None and not broker.is_running()
    finally:
        broker.close()


# -- PostgreSQL ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


def _libpq(url: str) -> str:
    """The SQLAlchemy URL as libpq takes it: the same URL without the driver name."""
    assert url.startswith("postgresql+psycopg://")
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_postgres_table_roundtrip(own_postgres: PostgresServer) -> None:
    url = own_postgres.url
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{own_postgres.port}/poise"
    table = _unique("scores")
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, name text NOT NULL, score real)")
        conn.execute(f"INSERT INTO {table} (name, score) VALUES (%s, %s), (%s, %s)",
                     ("clarity", 0.75, "pace", 0.5))
        conn.commit()
    with psycopg.connect(_libpq(url)) as conn:
        rows = conn.execute(f"SELECT name, score FROM {table} ORDER BY id").fetchall()
    assert rows == [("clarity", 0.75), ("pace", 0.5)]


def test_postgres_second_database(own_postgres: PostgresServer) -> None:
    name = _unique("devstack_db")
    url = own_postgres.create_database(name)
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{own_postgres.port}/{name}"
    with psycopg.connect(_libpq(url)) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (name,)
        conn.execute("CREATE TABLE only_here (x int)")
        conn.commit()
    with psycopg.connect(_libpq(own_postgres.url)) as conn:
        found = conn.execute("SELECT to_regclass('only_here')").fetchone()
    assert found == (None,)
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        own_postgres.create_database(name)
    with pytest.raises(ValueError):
        own_postgres.create_database("bad-name; DROP")
    own_postgres.drop_database(name)
    with psycopg.connect(own_postgres.dsn("postgres")) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None


def test_postgres_restart_keeps_data_and_stop_leaves_nothing() -> None:
    with PostgresServer(database="restart_db") as server:
        url, first_pid = server.url, server.pid
        with psycopg.connect(_libpq(url)) as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('still here')")
            conn.commit()
        server.restart()
        assert server.url == url
        assert first_pid is not None and not pid_exists(first_pid)
        with psycopg.connect(_libpq(url)) as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]
        pid, work_dir, port = server.pid, server.work_dir, server.port
        assert pid is not None and pid_exists(pid)
    assert not pid_exists(pid)
    assert server.pid is None
    assert work_dir is not None and not work_dir.exists()
    assert not port_accepts(LOCALHOST, port or 0)


def test_postgres_without_binaries_names_the_package(tmp_path) -> None:
    server = PostgresServer(bindir=tmp_path)
    with pytest.raises(RuntimeError, match="`postgresql`"):
        server.start()
    server.close()


def test_postgres_bad_setting_fails_with_its_log() -> None:
    server = PostgresServer(settings={"shared_buffers": "'lots'"})
    try:
        with pytest.raises(StartupError, match="(?s)exited with status.*shared_buffers"):
            server.start()
        assert server.pid is None
    finally:
        server.close()
