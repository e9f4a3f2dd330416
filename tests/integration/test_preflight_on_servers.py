"""``migrator preflight`` on real servers: each blocker it names is caught (a missing topic, wrong
partitions, a schema behind, a transaction a killed producer left open, a legacy row the
rehearsal cannot migrate), a clean setup passes, and the rehearsal changes and publishes nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import sql
from agents.jobs.schema import apply_schema
from streams import topics
from streams.connections import connect
from streams.settings import Settings
from streams.topic_admin import ensure_topics


def preflight(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "preflight", "--transaction-wait", "0.5", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "KAFKA_BROKER_URL": settings.kafka_broker_url,
            "REDIS_URL": settings.redis_url,
            **env,
        },
    )


def line(result: subprocess.CompletedProcess[str], start: str) -> str:
    found = [row for row in result.stdout.splitlines() if row.startswith(start)]
    assert found, f"no line starting {start!r} in:\n{result.stdout}{result.stderr}"
    return found[0]


@pytest.fixture(scope="module")
async def topics_in_place(settings: Settings) -> Settings:
    await ensure_topics(settings)  # the public topics and this app id's control topic
    return settings


async def seed(pool: asyncpg.Pool, rows: list[tuple[str, list[str]]]) -> None:
    await pool.executemany(
        "INSERT INTO legacy_onboarding_status (user_id, workspace_id, status, current_step,"
        " completed_steps, answers, updated_at) VALUES ($1, 'ws', 'in_progress', 'goals', $2,"
        ' \'{"company_name": "Acme"}\', now())',
        rows,
    )


async def end_offsets(settings: Settings) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        tps = [
            TopicPartition(name, p)
            for name in topics.PUBLIC_TOPICS
            for p in range(settings.topic_partitions)
        ]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def state_of(pool: asyncpg.Pool, client: aioredis.Redis, users: list[str]) -> object:
    legacy = await pool.fetch(
        "SELECT * FROM legacy_onboarding_status WHERE user_id = ANY($1) ORDER BY user_id", users
    )
    counts = [
        await pool.fetchval(f"SELECT count(*) FROM {table} WHERE user_id = ANY($1)", users)
        for table in ("onboarding_sessions", "onboarding_migration_log", "migration_requests")
    ]
    keys = [await client.exists(f"onboarding:user:{user}") for user in users]
    return [dict(r) for r in legacy], counts, keys


async def test_a_clean_setup_is_ready_and_the_rehearsal_keeps_and_publishes_nothing(
    topics_in_place: Settings, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
) -> None:
    users = [f"pf-ok-{unique}-{n}" for n in range(3)]
    await seed(pool, [(user, ["account", "profile"]) for user in users])
    before, offsets = await state_of(pool, redis_client, users), await end_offsets(topics_in_place)

    result = preflight(topics_in_place, "--ids", ",".join(users))

    assert result.returncode == 0, result.stdout + result.stderr
    assert line(result, "✓ rollback rehearsal").startswith(
        "✓ rollback rehearsal: 3 of 3 sampled users migrated, validated, rolled back"
    )
    assert line(result, "preflight: ready")
    for name in ("PostgreSQL answers", "Redis answers", "Kafka answers", "schema: current"):
        assert line(result, f"✓ {name}")
    assert await state_of(pool, redis_client, users) == before
    assert await end_offsets(topics_in_place) == offsets


async def test_a_legacy_row_the_rehearsal_cannot_migrate_blocks_by_code(
    topics_in_place: Settings, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
) -> None:
    good, bad = f"pf-good-{unique}", f"pf-bad-{unique}"
    await seed(pool, [(good, ["account"]), (bad, ["account", "no_such_step"])])
    before = await state_of(pool, redis_client, [good, bad])

    result = preflight(topics_in_place, "--ids", f"{good},{bad}")

    assert result.returncode == 1, result.stdout + result.stderr
    found = line(result, "✗ rollback rehearsal")
    assert found.startswith("✗ rollback rehearsal: 1 of 2 sampled users migrated"), found
    assert f"would fail: unknown_legacy_step: 1 ({bad}) (" in found
    assert "--accept unknown_legacy_step" in result.stdout
    assert await state_of(pool, redis_client, [good, bad]) == before

    accepted = preflight(topics_in_place, "--ids", bad, "--accept", "unknown_legacy_step")
    assert accepted.returncode == 0, accepted.stdout
    assert line(accepted, "! rollback rehearsal")


async def test_a_missing_topic_is_a_blocker(topics_in_place: Settings, unique: str) -> None:
    app_id = f"pf-missing-{unique}"  # its control topic was never created
    result = preflight(topics_in_place, "--sample", "0", MIGRATOR_APP_ID=app_id)

    assert result.returncode == 1
    assert line(result, f"✗ topic {app_id}-control") == f"✗ topic {app_id}-control: missing"
    assert f"--create --topic {app_id}-control --partitions 1" in result.stdout


async def test_topics_with_other_partitions_than_configured_are_a_blocker(
    topics_in_place: Settings,
) -> None:
    result = preflight(topics_in_place, "--sample", "0", MIGRATOR_TOPIC_PARTITIONS="5")

    assert result.returncode == 1
    assert line(result, f"✗ topic {topics.REQUESTED}") == (
        f"✗ topic {topics.REQUESTED}: 4 partitions, MIGRATOR_TOPIC_PARTITIONS says 5"
    )


@pytest.fixture
async def database_one_file_behind(settings: Settings, unique: str) -> AsyncIterator[Settings]:
    admin = await connect(settings)
    name = f"test_pf_{unique}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    behind = settings.model_copy(
        update={"database_url": f"{settings.database_url.rpartition('/')[0]}/{name}"}
    )
    conn = await connect(behind)
    try:
        await apply_schema(conn, sql.ddl_files()[:-1])
    finally:
        await conn.close()
    yield behind
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def test_a_schema_behind_is_a_blocker(
    topics_in_place: Settings, database_one_file_behind: Settings
) -> None:
    latest = sql.ddl_files()[-1][1]
    result = preflight(database_one_file_behind)

    assert result.returncode == 1
    assert line(result, "✗ schema") == f"✗ schema: behind: {latest} not applied"
    assert "fix: migrator db init" in result.stdout
    assert line(result, "– rollback rehearsal")


# A transactional producer that begins, sends one record to partition 0 of the request topic,
# says so, and waits to be killed without committing.
_ABANDONING_PRODUCER = textwrap.dedent(
    """
    import asyncio, sys
    from aiokafka import AIOKafkaProducer
    async def main():
        producer = AIOKafkaProducer(
            bootstrap_servers=sys.argv[1], transactional_id=sys.argv[2]
        )
        await producer.start()
        await producer.begin_transaction()
        sent = await producer.send_and_wait(sys.argv[3], b"{}", key=b"k", partition=0)
        print(sent.offset, flush=True)
        await asyncio.sleep(600)
    asyncio.run(main())
    """
)


async def test_a_transaction_a_killed_producer_left_open_is_a_blocker(
    topics_in_place: Settings, unique: str
) -> None:
    transactional_id = f"pf-abandoned-{unique}"
    bootstrap = topics_in_place.kafka_bootstrap_servers[0]
    producer = subprocess.Popen(
        [sys.executable, "-c", _ABANDONING_PRODUCER, bootstrap, transactional_id, topics.REQUESTED],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert producer.stdout is not None
        offset = int(producer.stdout.readline())
    finally:
        producer.send_signal(signal.SIGKILL)
        producer.wait()
    try:
        result = preflight(topics_in_place, "--sample", "0")
        assert result.returncode == 1, result.stdout
        found = line(result, "✗ hanging transactions")
        assert f"{topics.REQUESTED}[0] open from offset {offset}" in found
        assert (
            f"abort --topic {topics.REQUESTED} --partition 0 --start-offset {offset}"
            in result.stdout
        )
    finally:
        # A producer with the same transactional id fences the dead one and aborts its
        # transaction: the request topic is left as the other tests expect it.
        fencer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id)
        await fencer.start()
        await fencer.stop()
    assert line(preflight(topics_in_place, "--sample", "0"), "✓ hanging transactions")
