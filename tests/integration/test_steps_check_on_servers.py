"""The check that every new step row has its session, on a real PostgreSQL, after the trap that
made it scan every session: ``onboarding_sessions`` analyzed while nearly empty, the check's plan
cached on a connection (a trigger's statements are planned once per connection), then the table
grown by a flood. The check must still probe the primary key, once per new session."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
from support.table_scans import table_scans

from agents.core.rows import ManifestRow, SessionRow, StepsRow
from agents.stores.postgres_batch import PostgresTransaction

GROWN_TO = 40_000
CODES = "c" * 10 + "s" * 4 + "p" * 10


def _sessions(count: int, tag: str) -> tuple[list[SessionRow], list[StepsRow]]:
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(count)]
    sessions = [
        SessionRow(
            sid, f"{tag}-{n}", None, "in_progress", 11, 41.67, 10, {}, "0" * 64, sid, now, now
        )
        for n, sid in enumerate(ids)
    ]
    return sessions, [StepsRow(sid, CODES, now) for sid in ids]


async def test_the_check_probes_each_new_session_once_after_the_table_grew_from_empty(
    own_database: asyncpg.Connection,
) -> None:
    conn = own_database
    store = PostgresTransaction(conn)
    no_manifests: list[ManifestRow] = []
    await conn.execute("ALTER TABLE onboarding_sessions SET (autovacuum_enabled = false)")
    async with conn.transaction():
        await store.insert_sessions(*_sessions(10, "first"), no_manifests)
    await conn.execute("ANALYZE onboarding_sessions")  # ten rows: what a new migration starts with
    async with conn.transaction():  # the check's plan is made now, on those statistics
        await store.insert_sessions(*_sessions(10, "second"), no_manifests)
    await conn.execute(
        "INSERT INTO onboarding_sessions (session_id, user_id, status, completion_percentage,"
        " steps_completed, legacy_snapshot, legacy_sha256, request_id, created_at, updated_at)"
        " SELECT id, 'grown-' || id, 'not_started', 0, 0, '{}', repeat('0', 64), id, now(), now()"
        " FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $1)) AS g",
        GROWN_TO,
    )
    sessions, steps = _sessions(400, "flood")
    async with conn.transaction():
        before = await table_scans(conn, "onboarding_sessions")
        await store.insert_sessions(sessions, steps, no_manifests)
        after = await table_scans(conn, "onboarding_sessions")
    assert after[0] - before[0] == 0  # no scan of every session (the trap: one per statement)
    assert after[1] - before[1] == len(sessions)  # one probe per session, not one per step row
    count = "SELECT count(*) FROM onboarding_steps WHERE session_id = ANY($1::uuid[])"
    assert await conn.fetchval(count, [s.session_id for s in sessions]) == 24 * len(sessions)
