"""Round trips through the real servers the service depends on."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.jobs.schema import apply_schema
from streams.connections import connect
from streams.settings import Settings


async def _create_topic(bootstrap: list[str], name: str, partitions: int = 2) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def _read_all(bootstrap: list[str], topic: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(values) < expected and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            values += [record.value for records in batch.values() for record in records]
        # Give any record that should not be there (an aborted one) a chance to show up.
        batch = await consumer.getmany(timeout_ms=1000)
        values += [record.value for records in batch.values() for record in records]
    finally:
        await consumer.stop()
    return values


async def test_kafka_transactions_are_visible_to_read_committed_only_when_committed(
    stack_settings: Settings,
) -> None:
    bootstrap = stack_settings.kafka_bootstrap_servers
    topic = f"test-tx-{uuid.uuid4().hex[:8]}"
    await _create_topic(bootstrap, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"test-{topic}", enable_idempotence=True
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-1", key=b"a")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted", key=b"a")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-2", key=b"a")
    finally:
        await producer.stop()
    assert await _read_all(bootstrap, topic, expected=2) == [b"committed-1", b"committed-2"]


async def test_plain_produce_consume_round_trip(stack_settings: Settings) -> None:
    bootstrap = stack_settings.kafka_bootstrap_servers
    topic = f"test-plain-{uuid.uuid4().hex[:8]}"
    await _create_topic(bootstrap, topic, partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(50):
            await producer.send(topic, f"v{i}".encode(), key=b"k")
        await producer.flush()
    finally:
        await producer.stop()
    assert await _read_all(bootstrap, topic, expected=50) == [f"v{i}".encode() for i in range(50)]


async def test_schema_applies_twice_and_refuses_changes(settings: Settings) -> None:
    conn = await connect(settings)
    try:
        # The session fixture applied it once already; a second run applies nothing.
        report = await apply_schema(conn)
        assert report.applied == []
        assert len(report.already) >= 4
        tables = {
            row["tablename"]
            for row in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert {
            "legacy_onboarding_status",
            "onboarding_sessions",
            "onboarding_steps",
            "business_context_manifests",
            "onboarding_migration_log",
            "schema_migrations",
        } <= tables
    finally:
        await conn.close()


async def test_audit_log_is_append_only(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        request_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO onboarding_migration_log (request_id, user_id, action, outcome)"
            " VALUES ($1, 'u-audit', 'migrate', 'migrated')",
            request_id,
        )
        for statement in (
            "UPDATE onboarding_migration_log SET outcome = 'x' WHERE request_id = $1",
            "DELETE FROM onboarding_migration_log WHERE request_id = $1",
        ):
            try:
                await conn.execute(statement, request_id)
            except asyncpg.RaiseError as exc:
                assert "append-only" in str(exc)
            else:
                raise AssertionError(f"{statement!r} was allowed")


async def test_redis_round_trip(redis_client: aioredis.Redis) -> None:
    key = f"test:{uuid.uuid4().hex}"
    async with redis_client.pipeline(transaction=False) as pipe:
        pipe.set(key, "value", ex=60)
        pipe.get(key)
        _, value = await pipe.execute()
    assert value == b"value"
    assert await redis_client.delete(key) == 1
