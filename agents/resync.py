"""``migrator resync-redis``: rebuild the Redis mirror from PostgreSQL, a page at a time.

Every session is rewritten, then keys PostgreSQL no longer backs (a user pointer without a
session, a session document whose id is gone) are deleted, so Redis ends up equal to PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import asyncpg
import redis.asyncio as aioredis

from agents import pg_store, redis_store
from agents.documents import document_from_row


async def resync_redis(
    pool: asyncpg.Pool,
    client: aioredis.Redis,
    *,
    page_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Rewrite the document and user pointer of every session; return how many were written."""
    written = 0
    after = ""
    while True:
        users = await pg_store.session_users_page(pool, after, page_size)
        if not users:
            return written
        rows = await pg_store.session_documents(pool, users)
        await redis_store.write_sessions(client, [document_from_row(row) for row in rows])
        written += len(rows)
        after = users[-1]
        if progress is not None:
            progress(written)


async def prune_redis(pool: asyncpg.Pool, client: aioredis.Redis) -> int:
    """Delete mirror keys PostgreSQL does not back; return how many were deleted."""
    removed = 0
    async for users in redis_store.scan_ids(client, redis_store.USER_KEY):
        alive = await pg_store.users_with_sessions(pool, users)
        stale = [redis_store.user_key(user) for user in users if user not in alive]
        removed += await redis_store.delete_keys(client, stale)
    async for ids in redis_store.scan_ids(client, redis_store.SESSION_KEY):
        parsed = {raw: _uuid(raw) for raw in ids}
        alive_ids = await pg_store.existing_session_ids(
            pool, [value for value in parsed.values() if value is not None]
        )
        stale = [redis_store.session_key(raw) for raw, value in parsed.items()
                 if value is None or value not in alive_ids]  # fmt: skip
        removed += await redis_store.delete_keys(client, stale)
    return removed


def _uuid(raw: str) -> UUID | None:
    try:
        return UUID(raw)
    except ValueError:
        return None
