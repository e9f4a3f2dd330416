"""The worker keeps the Redis mirror equal to PostgreSQL by itself, without an operator.

Once a second it looks at Redis:
- Redis that restarted or was flushed has lost writes that no pending row records (a restart
  brings back an older snapshot; FLUSHALL brings back nothing). Redis's ``run_id`` changes at
  every start, and a marker key holding the ``run_id`` of the last full rebuild is gone after a
  flush; either way the whole mirror is rebuilt and pruned (one worker at a time, under a
  PostgreSQL advisory lock), while batches go on writing.
- Users a batch could not mirror (Redis was down) are rewritten from PostgreSQL.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from agents.jobs.resync import prune_redis, repair_pending, resync_redis
from agents.stores import postgres, redis_mirror
from agents.stores.postgres import Pool
from agents.stores.redis_mirror import Client

log = logging.getLogger(__name__)

_LOCK_KEY = 0x6D6972726F72  # "mirror"


@dataclass
class Healed:
    """What one look did: whether Redis answered, and how much was rewritten."""

    redis_up: bool
    rebuilt: int = 0
    repaired: int = 0


async def heal(pool: Pool, client: Client) -> Healed:
    """One look at Redis: rebuild it if it lost data, then rewrite pending users."""
    run_id = await redis_mirror.server_run_id(client)
    if run_id is None:
        return Healed(redis_up=False)
    rebuilt = await _rebuild_if_lost(pool, client, run_id)
    repaired = await repair_pending(pool, client)
    if repaired:
        log.info("Redis mirror of %d users repaired", repaired)
    return Healed(redis_up=True, rebuilt=rebuilt, repaired=repaired)


async def _rebuild_if_lost(pool: Pool, client: Client, run_id: str) -> int:
    if await redis_mirror.rebuilt_for(client) == run_id:
        return 0
    async with pool.acquire() as conn:
        if not await postgres.try_advisory_lock(conn, _LOCK_KEY):
            return 0  # another worker is rebuilding
        try:
            return await _rebuild(pool, client, run_id)
        finally:
            await postgres.advisory_unlock(conn, _LOCK_KEY)


async def _rebuild(pool: Pool, client: Client, run_id: str) -> int:
    """Rebuild until no flush happened meanwhile (the marker set at the start survived)."""
    while True:
        started = time.monotonic()
        token = f"rebuilding:{uuid.uuid4()}"
        await redis_mirror.swap_marker(client, token)
        written = await resync_redis(pool, client)
        removed = await prune_redis(pool, client)
        if await redis_mirror.swap_marker(client, run_id) == token:
            log.info(
                "Redis mirror rebuilt (Redis %s): %d sessions written, %d stale keys "
                "removed in %.1f s",
                run_id[:8],
                written,
                removed,
                time.monotonic() - started,
            )
            return written
        log.warning("Redis lost its data again during the rebuild: rebuilding again")
