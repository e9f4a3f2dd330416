"""Pruning processed_records on real servers: only answers below the group's committed offset
(as Kafka holds it) and older than the retention go, in batches, one pruner at a time, and
another app id's answers are never touched."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.jobs.pruning import LOCK_KEY, prune_processed
from agents.stores import postgres
from streams import topics
from streams.group_offsets import GroupOffsets
from streams.processed_pruner import ProcessedPruner
from streams.settings import Settings

RETENTION_S = 600.0


async def answers(pool: asyncpg.Pool, app_id: str) -> dict[int, list[int]]:
    """Per partition, the offsets still answered, after 30 rows per partition 0-2 were given:
    offsets 0-19 an hour ago, 20-29 now."""
    rows = await pool.fetch(
        "SELECT source_partition, source_offset FROM processed_records WHERE app_id = $1"
        " ORDER BY 1, 2",
        app_id,
    )
    found: dict[int, list[int]] = {}
    for row in rows:
        found.setdefault(row["source_partition"], []).append(row["source_offset"])
    return found


async def give_answers(pool: asyncpg.Pool, app_id: str) -> None:
    now = datetime.now(UTC)
    await pool.executemany(
        "INSERT INTO processed_records (app_id, source_partition, source_offset, record_digest,"
        " outcome, processed_at) VALUES ($1, $2, $3, '\\x00', NULL, $4)",
        [
            (app_id, partition, offset, now - timedelta(hours=1) if offset < 20 else now)
            for partition in range(3)
            for offset in range(30)
        ],
    )


async def test_only_old_answers_below_the_committed_offset_go(
    pool: asyncpg.Pool, unique: str
) -> None:
    app_id, other = f"prune-{unique}", f"prune-other-{unique}"
    await give_answers(pool, app_id)
    await give_answers(pool, other)

    pruned = await prune_processed(
        pool,
        app_id=app_id,
        committed={0: 25, 1: 10, 2: 0},
        retention_s=RETENTION_S,
        now=datetime.now(UTC),
        batch=7,  # several batches per partition
    )

    assert pruned.ran and pruned.deleted == {0: 20, 1: 10}
    left = await answers(pool, app_id)
    assert left[0] == list(range(20, 30))  # below 25 but given now: kept
    assert left[1] == list(range(10, 30))
    assert left[2] == list(range(30))  # nothing committed: nothing known dead
    assert sum(map(len, (await answers(pool, other)).values())) == 90


async def test_one_pruner_at_a_time(pool: asyncpg.Pool, unique: str) -> None:
    app_id = f"prune-lock-{unique}"
    await give_answers(pool, app_id)
    async with pool.acquire() as holder:
        assert await postgres.try_advisory_lock(holder, LOCK_KEY)
        try:
            skipped = await prune_processed(
                pool,
                app_id=app_id,
                committed={0: 30},
                retention_s=RETENTION_S,
                now=datetime.now(UTC),
            )
        finally:
            await postgres.advisory_unlock(holder, LOCK_KEY)
    assert not skipped.ran
    assert len((await answers(pool, app_id))[0]) == 30


@dataclass
class Held:
    """What the pruner borrows of the worker's resources: the pool and the group's offsets."""

    pool: asyncpg.Pool
    group_offsets: GroupOffsets


async def test_the_worker_pruner_reads_the_committed_offsets_from_kafka(
    settings: Settings, pool: asyncpg.Pool, unique: str
) -> None:
    app_id = f"prune-group-{unique}"
    await give_answers(pool, app_id)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=app_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topics.REQUESTED, 1)
        consumer.assign([tp])
        await consumer.commit({tp: 15})
    finally:
        await consumer.stop()
    offsets = GroupOffsets(settings.kafka_bootstrap_servers, app_id)
    worker_settings = settings.model_copy(
        update={"app_id": app_id, "processed_retention_s": RETENTION_S}
    )
    pruner = ProcessedPruner(worker_settings, Held(pool, offsets))  # type: ignore[arg-type]
    try:
        assert await pruner.prune_once() == 15
    finally:
        await offsets.close()
    left = await answers(pool, app_id)
    assert left[1] == list(range(15, 30))
    assert len(left[0]) == len(left[2]) == 30
    assert (pruner.tally.rounds, pruner.tally.deleted) == (1, 15)
