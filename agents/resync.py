"""``migrator resync-redis``: rebuild every Redis session from PostgreSQL, a page at a time."""

from __future__ import annotations

from collections.abc import Callable

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
