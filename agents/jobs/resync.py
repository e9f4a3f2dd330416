"""Rebuilding the Redis mirror from PostgreSQL: pending users, everything, or stale keys.

Each page runs in a PostgreSQL transaction that first locks the users' legacy rows, the lock a
batch holds while it writes the same users' keys. So a rebuild never writes a state PostgreSQL
has already moved past, and never deletes keys a batch is about to commit: it can run while the
workers migrate (``migrator resync-redis``, or the worker itself after Redis lost data).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from uuid import UUID

from agents.core.documents import document_from_row
from agents.stores import postgres, redis_mirror
from agents.stores.postgres import Pool
from agents.stores.redis_mirror import Client


async def rewrite_users(conn: postgres.Conn, client: Client, users: Sequence[str]) -> int:
    """Make Redis equal PostgreSQL for ``users`` (their rows locked by the caller)."""
    if not users:
        return 0
    rows = await postgres.session_documents(conn, users)
    documents = [document_from_row(row) for row in rows]
    current = {doc["user_id"]: str(doc["session_id"]) for doc in documents}
    pointers = await redis_mirror.user_pointers(client, users)
    stale = [
        pointer
        for user, pointer in zip(users, pointers, strict=True)
        if pointer is not None and pointer != current.get(user)
    ]
    await redis_mirror.write_sessions(
        client,
        documents,
        stale_sessions=stale,
        users_without_session=[user for user in users if user not in current],
    )
    return len(documents)


async def repair_pending(pool: Pool, client: Client, *, page_size: int = 1000) -> int:
    """Rewrite the users whose mirror a batch could not write; return how many were repaired."""
    repaired = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            users = await postgres.lock_pending_mirrors(conn, page_size)
            if not users:
                return repaired
            await postgres.lock_legacy_users(conn, users)
            await rewrite_users(conn, client, users)
            await postgres.clear_pending_mirrors(conn, users)
        repaired += len(users)


async def resync_redis(
    pool: Pool,
    client: Client,
    *,
    page_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Rewrite the document and user pointer of every session; return how many were written."""
    written = 0
    after = ""
    while True:
        users = await postgres.session_users_page(pool, after, page_size)
        if not users:
            return written
        async with pool.acquire() as conn, conn.transaction():
            await postgres.lock_legacy_users(conn, users)
            written += await rewrite_users(conn, client, users)
        after = users[-1]
        if progress is not None:
            progress(written)


async def resync_users(pool: Pool, client: Client, users: Sequence[str]) -> int:
    """Make Redis equal PostgreSQL for the given users only; return the sessions written."""
    async with pool.acquire() as conn, conn.transaction():
        await postgres.lock_legacy_users(conn, sorted(users))
        return await rewrite_users(conn, client, sorted(users))


async def _stale_user_keys(conn: postgres.Conn | Pool, users: Sequence[str]) -> list[str]:
    """User pointers of ``users`` with no session behind them in PostgreSQL."""
    alive = await postgres.users_with_sessions(conn, users)
    return [redis_mirror.user_key(user) for user in users if user not in alive]


async def _stale_session_keys(conn: postgres.Conn | Pool, ids: Sequence[str]) -> list[str]:
    """Session documents of ``ids`` (raw key suffixes) PostgreSQL holds no session for."""
    parsed = {raw: _uuid(raw) for raw in ids}
    alive = await postgres.existing_session_ids(
        conn, [value for value in parsed.values() if value is not None]
    )
    return [
        redis_mirror.session_key(raw)
        for raw, value in parsed.items()
        if value is None or value not in alive
    ]


async def stale_keys(pool: Pool, client: Client) -> list[str]:
    """The mirror keys PostgreSQL does not back now (read only: what ``prune_redis`` would
    delete, give or take what batches change meanwhile)."""
    stale: list[str] = []
    async for users in redis_mirror.scan_ids(client, redis_mirror.USER_KEY):
        stale += await _stale_user_keys(pool, users)
    async for ids in redis_mirror.scan_ids(client, redis_mirror.SESSION_KEY):
        stale += await _stale_session_keys(pool, ids)
    return stale


async def prune_redis(pool: Pool, client: Client) -> int:
    """Delete mirror keys PostgreSQL does not back; return how many were deleted."""
    removed = 0
    async for users in redis_mirror.scan_ids(client, redis_mirror.USER_KEY):
        async with pool.acquire() as conn, conn.transaction():
            await postgres.lock_legacy_users(conn, users)
            stale = await _stale_user_keys(conn, users)
            removed += await redis_mirror.delete_keys(client, stale)
    async for ids in redis_mirror.scan_ids(client, redis_mirror.SESSION_KEY):
        owners = [_owner(raw) for raw in await redis_mirror.raw_sessions(client, ids)]
        async with pool.acquire() as conn, conn.transaction():
            await postgres.lock_legacy_users(conn, sorted({o for o in owners if o is not None}))
            stale = await _stale_session_keys(conn, ids)
            removed += await redis_mirror.delete_keys(client, stale)
    return removed


def _owner(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    try:
        user = json.loads(raw).get("user_id")
    except (ValueError, AttributeError):
        return None
    return user if isinstance(user, str) else None


def _uuid(raw: str) -> UUID | None:
    try:
        return UUID(raw)
    except ValueError:
        return None
