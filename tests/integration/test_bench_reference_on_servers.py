"""The bench's hand-written reference pipeline (``scripts/bench_reference.py``) on the real servers.

Its figure is only worth comparing with the service's if it does the service's work: so each user
it migrates must validate (``validate_user``: PostgreSQL and Redis agree, steps, manifest and
snapshot consistent), its rows must be the ones the batch applier writes for the same legacy data
(table by table), every request must get exactly one outcome, and a redelivery must answer again
without writing twice (at-least-once).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.batch_applier import BatchApplier
from agents.core.decide import Work
from agents.jobs.seed import SeedOptions, generate, write_rows
from agents.jobs.validation import validate_user
from agents.stores.postgres_batch import PostgresStore
from agents.stores.redis_mirror import RedisMirror
from schemas.events import MigrationRequest
from streams import topics
from streams.settings import Settings

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_reference.py"
USERS = 16


def load_reference() -> ModuleType:
    """``scripts/`` is not a package: the module is loaded from its file (registered first, as
    its dataclasses need)."""
    spec = importlib.util.spec_from_file_location("bench_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def create_topics(settings: Settings, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        names = [topics.REQUESTED, *topics.OUTCOME_TOPICS.values()]
        await admin.create_topics(
            [NewTopic(prefix + name, settings.topic_partitions, 1) for name in names]
        )
    finally:
        await admin.close()


async def seed(pool: asyncpg.Pool, prefix: str) -> list[str]:
    """The same legacy data under each prefix (the generator's draws do not depend on it); a
    quarter broken, so that failures are answered too."""
    rows = list(generate(SeedOptions(users=USERS, prefix=prefix, seed=5, problem_ratio=0.25)))
    assert await write_rows(pool, iter(rows)) == USERS
    return [row[0] for row in rows]


def request_value(user_id: str) -> bytes:
    return json.dumps(
        {"schema_version": 1, "request_id": str(uuid.uuid4()), "user_id": user_id}
    ).encode()


async def publish(settings: Settings, topic: str, users: list[str]) -> dict[str, str]:
    """One migrate request per user; returns each user's request id."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    sent = {}
    try:
        for user in users:
            value = request_value(user)
            sent[user] = json.loads(value)["request_id"]
            await producer.send_and_wait(topic, value, key=user.encode())
    finally:
        await producer.stop()
    return sent


async def read_outcomes(settings: Settings, prefix: str, wanted: int) -> list[Any]:
    """Every outcome record on the prefixed outcome topics (read_committed), once ``wanted``
    are there and a second more has brought no other."""
    consumer = AIOKafkaConsumer(
        *(prefix + name for name in topics.OUTCOME_TOPICS.values()),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + 60
        quiet_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp_records in batch.values():
                records.extend(tp_records)
            if len(records) >= wanted:
                quiet_until = quiet_until or time.monotonic() + 1.0
                if time.monotonic() > quiet_until:
                    break
    finally:
        await consumer.stop()
    return records


async def rewind(settings: Settings, group: str, topic: str) -> dict[TopicPartition, int]:
    """The group's committed offsets, then set back to 0: every request redelivered."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        committed = {tp: await consumer.committed(tp) for tp in partitions}
        await consumer.commit(dict.fromkeys(partitions, 0))
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    # A partition no request landed on has nothing committed (None): its end is 0.
    at = {tp: committed[tp] or 0 for tp in partitions}
    assert at == ends, "offsets are committed once the outcomes are published"
    return ends


async def table_counts(pool: asyncpg.Pool, prefix: str, app_id: str) -> dict[str, Any]:
    """What a group of users has in each table a migrate writes, and its app id's records."""
    like = prefix + "%"
    one = pool.fetchval
    counters = await pool.fetch("SELECT totals FROM partition_counters WHERE app_id = $1", app_id)
    return {
        "sessions": await one(
            "SELECT count(*) FROM onboarding_sessions WHERE user_id LIKE $1", like
        ),
        "session_status": sorted(
            tuple(r)
            for r in await pool.fetch(
                "SELECT status, current_step, completion_percentage, steps_completed"
                " FROM onboarding_sessions WHERE user_id LIKE $1",
                like,
            )
        ),
        "steps": await one(
            "SELECT count(*) FROM onboarding_steps JOIN onboarding_sessions USING (session_id)"
            " WHERE user_id LIKE $1",
            like,
        ),
        "manifests": sorted(
            tuple(r)
            for r in await pool.fetch(
                "SELECT version, token_estimate > 0, length(checksum)"
                " FROM business_context_manifests WHERE user_id LIKE $1",
                like,
            )
        ),
        "legacy_migrated": await one(
            "SELECT count(*) FROM legacy_onboarding_status"
            " WHERE user_id LIKE $1 AND status = 'migrated'",
            like,
        ),
        "ledger": await one("SELECT count(*) FROM migration_requests WHERE user_id LIKE $1", like),
        "audit": sorted(
            tuple(r)
            for r in await pool.fetch(
                "SELECT outcome, error_code, detail ->> 'decision'"
                " FROM onboarding_migration_log WHERE user_id LIKE $1",
                like,
            )
        ),
        "processed": await one("SELECT count(*) FROM processed_records WHERE app_id = $1", app_id),
        "counters": {
            name: sum(row["totals"][name] for row in counters)
            for name in ("requested", "migrated", "failed", "already_done")
        },
    }


async def test_the_reference_pipeline_writes_what_the_service_writes(
    settings: Settings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    unique: str,
    tmp_path: Path,
) -> None:
    reference = load_reference()
    prefix = f"ref-{unique}-"
    group = f"bench-reference-{unique}"
    requested = prefix + topics.REQUESTED
    await create_topics(settings, prefix)
    ours = await seed(pool, f"r{unique}-")
    theirs = await seed(pool, f"s{unique}-")
    env = {
        **os.environ,
        "KAFKA_BROKER_URL": settings.kafka_broker_url,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "MIGRATOR_BATCH_SIZE": "5",  # several batches per partition
    }
    log = tmp_path / "reference.log"

    async with reference.running(env, log, app_id=group, topic_prefix=prefix) as process:
        request_ids = await publish(settings, requested, ours)
        outcomes = await read_outcomes(settings, prefix, USERS)
        done = await process.stop()
    assert done["records"] == USERS and done["answered_before"] == 0
    assert done["batches"] >= USERS // 5

    # One outcome per request, on its topic, keyed by the user, with the service's headers.
    assert sorted(r.key.decode() for r in outcomes) == sorted(ours)
    by_user = {r.key.decode(): r for r in outcomes}
    for user, record in by_user.items():
        event = json.loads(record.value)
        assert event["request_id"] == request_ids[user]
        assert record.topic == prefix + topics.OUTCOME_TOPICS[event["outcome"]]
        assert "migrator-request-id" in dict(record.headers)
    outcome_of = {user: json.loads(by_user[user].value)["outcome"] for user in ours}
    assert set(outcome_of.values()) == {"migrated", "failed"}

    # The service's batch applier on the same legacy data: the same rows, table by table.
    service = BatchApplier(PostgresStore(pool), RedisMirror(redis_client), app_id=f"svc-{unique}")
    works = [
        Work(MigrationRequest(request_id=uuid.uuid4(), user_id=user), n % 4, n, None, b"d")
        for n, user in enumerate(theirs)
    ]
    applied = await service.apply(works)
    assert applied is not None
    assert [o.outcome for o in applied.outcomes] == [outcome_of[user] for user in ours]
    ours_rows = await table_counts(pool, f"r{unique}-", group)
    assert ours_rows == await table_counts(pool, f"s{unique}-", f"svc-{unique}")
    assert ours_rows["counters"]["requested"] == USERS

    # Each user validates as its twin migrated by the service does: every migrated one OK (a
    # broken legacy row that failed may not be, whoever answered it).
    for user, twin in zip(ours, theirs, strict=True):
        report = await validate_user(pool, redis_client, user)
        service_report = await validate_user(pool, redis_client, twin)
        assert (report.state, report.ok) == (service_report.state, service_report.ok)
        if outcome_of[user] == "migrated":
            assert report.state == "migrated" and report.ok, report.as_dict()

    # At-least-once: every record again (as after a crash before the offset commit) is answered
    # again with the same outcome, and nothing is written twice.
    await rewind(settings, group, requested)
    async with reference.running(env, log, app_id=group, topic_prefix=prefix) as process:
        again = await read_outcomes(settings, prefix, 2 * USERS)
        done = await process.stop()
    assert done["answered_before"] == USERS
    assert len(again) == 2 * USERS
    # The same event (jsonb keeps no key order, so not the same bytes: the service's replay is
    # the same).
    events: dict[str, set[str]] = {}
    for record in again:
        event = json.dumps(json.loads(record.value), sort_keys=True)
        events.setdefault(record.key.decode(), set()).add(event)
    assert sorted(events) == sorted(ours)
    assert all(len(distinct) == 1 for distinct in events.values())
    assert await table_counts(pool, f"r{unique}-", group) == ours_rows
