"""The lookup of a batch's already answered records, on a real PostgreSQL, after the trap that
made it scan the whole table: the table analyzed while nearly empty (as the pruner leaves it),
the lookup run often enough on one connection for PostgreSQL to cache a generic plan, then the
table grown by a flood. The lookup must still go by the index, not scan the table."""

from __future__ import annotations

import asyncpg
from support.table_scans import table_scans

from agents.stores.postgres_batch import PostgresTransaction

APP_ID = "lookup-plan"
ROWS_PER_PARTITION = 5_000


async def test_the_lookup_goes_by_the_index_after_the_table_grew_from_empty(
    own_database: asyncpg.Connection,
) -> None:
    conn = own_database
    await conn.execute("ALTER TABLE processed_records SET (autovacuum_enabled = false)")
    await conn.execute("ANALYZE processed_records")  # empty, as the pruner can leave it
    positions = [(3, offset) for offset in range(ROWS_PER_PARTITION, ROWS_PER_PARTITION + 160)]
    store = PostgresTransaction(conn)
    for _ in range(8):  # past the five runs after which PostgreSQL may cache a generic plan
        async with conn.transaction():
            assert await store.processed_records(APP_ID, positions) == {}
    await conn.execute(
        "INSERT INTO processed_records (app_id, source_partition, source_offset, record_digest,"
        " outcome, processed_at)"
        " SELECT $1, p, o, '\\x00', NULL, now()"
        " FROM generate_series(0, 7) AS p, generate_series(0, $2::int - 1) AS o",
        APP_ID,
        ROWS_PER_PARTITION,
    )
    async with conn.transaction():
        before = await table_scans(conn, "processed_records")
        # A large batch, whose probes the planner would rather replace by hashing the table.
        asked = [
            (3, offset) for offset in range(ROWS_PER_PARTITION - 300, ROWS_PER_PARTITION + 100)
        ]
        found = await store.processed_records(APP_ID, asked)
        after = await table_scans(conn, "processed_records")
    assert sorted(found) == asked[:300]
    assert after[0] - before[0] == 0  # no scan of the table (the trap: one, hashing it all)
    assert after[1] - before[1] >= 1  # by the primary key
    # And the plan cache is back to its configured mode for the rest of the transaction.
    async with conn.transaction():
        await store.processed_records(APP_ID, positions)
        assert await conn.fetchval("SHOW plan_cache_mode") == "auto"
