"""Reading sessions with their steps (the re-validation sampler, ``migrator validate``, verify's
repairs, resync), on a real PostgreSQL, after the trap that made it read every step row: the
tables analyzed while nearly empty, the statement cached on a connection, then the tables grown
by a flood. It must still find a session's steps by the primary key."""

from __future__ import annotations

import asyncpg
from support.table_scans import table_scans

from agents.stores.postgres import session_documents

SESSIONS = """
INSERT INTO onboarding_sessions (session_id, user_id, status, completion_percentage,
    steps_completed, legacy_snapshot, legacy_sha256, request_id, created_at, updated_at)
SELECT id, 'user-' || n, 'not_started', 0, 0, '{}', repeat('0', 64), id, now(), now()
FROM (SELECT gen_random_uuid() AS id, n FROM generate_series($1::int, $2::int) AS n) AS g
"""
STEPS = """
INSERT INTO onboarding_steps (session_id, step_number, step_key, status, required)
SELECT s.session_id, k, 'step-' || k, 'pending', k <= 12
FROM onboarding_sessions AS s, generate_series(1, 24) AS k
WHERE s.user_id = ANY (SELECT 'user-' || n FROM generate_series($1::int, $2::int) AS n)
"""
GROWN_TO = 20_000


async def test_a_sessions_steps_are_found_by_the_key_after_the_tables_grew_from_empty(
    own_database: asyncpg.Connection,
) -> None:
    conn = own_database
    for table in ("onboarding_sessions", "onboarding_steps"):
        await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    await conn.execute(SESSIONS, 1, 10)
    await conn.execute(STEPS, 1, 10)
    await conn.execute("ANALYZE onboarding_sessions; ANALYZE onboarding_steps")
    for _ in range(8):  # past the five runs after which PostgreSQL may cache a generic plan
        assert len(await session_documents(conn, ["user-3"])) == 1
    await conn.execute(SESSIONS, 11, GROWN_TO)
    await conn.execute(STEPS, 11, GROWN_TO)
    async with conn.transaction():
        before = await table_scans(conn, "onboarding_steps")
        [found] = await session_documents(conn, ["user-12345"])
        after = await table_scans(conn, "onboarding_steps")
        # Inside the caller's transaction, the plan cache is back to its mode afterwards.
        assert await conn.fetchval("SHOW plan_cache_mode") == "auto"
    assert found["user_id"] == "user-12345"
    assert [step["step_number"] for step in found["steps"]] == list(range(1, 25))
    assert after[0] - before[0] == 0  # no read of every step row (the trap: one per call)
    assert after[1] - before[1] >= 1  # by the primary key
