"""Picking users to re-validate: recently migrated ones and any migrated one, read-only.

Both picks go through an index (the audit log's primary key, the sessions' primary key), so a
pick costs the same on ten thousand users as on ten million.
"""

from __future__ import annotations

import random
import uuid

import asyncpg

import sql

# "Recently migrated": among the audit log's latest rows.
RECENT_ROWS = 5_000


async def recent_users(pool: asyncpg.Pool, count: int) -> list[str]:
    """Up to ``count`` users migrated recently, starting at a random recent answer."""
    latest = await pool.fetchval("SELECT max(id) FROM onboarding_migration_log")
    if latest is None:
        return []
    start = max(0, int(latest) - random.randrange(RECENT_ROWS))
    rows = await pool.fetch(sql.query("recent_migrated_users"), start, count)
    return [row["user_id"] for row in rows]


async def any_user(pool: asyncpg.Pool) -> str | None:
    return await pool.fetchval(sql.query("any_session_user"), uuid.uuid4())  # type: ignore[no-any-return]
