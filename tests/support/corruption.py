"""Corruptions planted in PostgreSQL and Redis, for the tests and the benchmark of ``verify``.

Each kind says which verify finding kind it must cause (``postgres``, ``redis``, ``drift``,
``unrepairable``), so a test can hold verify to finding every one, and the repair to repairing
exactly the repairable ones. Used by tests/integration/test_verify_on_servers.py and
scripts/bench_verify.py.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis

Plant = Callable[[asyncpg.Pool, aioredis.Redis, asyncpg.Record], Awaitable[None]]


@dataclass(frozen=True)
class Corruption:
    name: str
    expects: str  # the kind of finding verify must report
    needs_manifest: bool
    plant: Plant


async def _sql(pool: asyncpg.Pool, statement: str, *args: Any) -> None:
    await pool.execute(statement, *args)


def _pg(statement: str) -> Plant:
    async def plant(pool: asyncpg.Pool, _redis: aioredis.Redis, s: asyncpg.Record) -> None:
        await _sql(pool, statement, s["session_id"])

    return plant


async def _redis_doc_gone(_pool: asyncpg.Pool, redis: aioredis.Redis, s: asyncpg.Record) -> None:
    await redis.delete(f"onboarding:session:{s['session_id']}")


async def _redis_pointer_gone(
    _pool: asyncpg.Pool, redis: aioredis.Redis, s: asyncpg.Record
) -> None:
    await redis.delete(f"onboarding:user:{s['user_id']}")


async def _redis_doc_altered(_pool: asyncpg.Pool, redis: aioredis.Redis, s: asyncpg.Record) -> None:
    key = f"onboarding:session:{s['session_id']}"
    raw = await redis.get(key)
    assert raw is not None
    await redis.set(key, raw.replace(b'"steps_total":24', b'"steps_total":23'))


async def _redis_pointer_wrong(
    _pool: asyncpg.Pool, redis: aioredis.Redis, s: asyncpg.Record
) -> None:
    await redis.set(f"onboarding:user:{s['user_id']}", "00000000-0000-0000-0000-000000000000")


async def _legacy_changed(pool: asyncpg.Pool, _redis: aioredis.Redis, s: asyncpg.Record) -> None:
    await _sql(
        pool,
        'UPDATE legacy_onboarding_status SET answers = answers || \'{"industry": "drifted"}\','
        " updated_at = now() WHERE user_id = $1",
        s["user_id"],
    )


CORRUPTIONS: tuple[Corruption, ...] = (
    Corruption(
        "step_status",
        "postgres",
        False,
        _pg(
            "UPDATE onboarding_steps SET status = CASE status WHEN 'pending' THEN 'skipped'"
            " ELSE 'pending' END, completed_at = NULL WHERE session_id = $1 AND step_number = 24"
        ),
    ),
    Corruption(
        "step_deleted",
        "postgres",
        False,
        _pg("DELETE FROM onboarding_steps WHERE session_id = $1 AND step_number = 7"),
    ),
    Corruption(
        "step_completed_at",
        "postgres",
        False,
        _pg(
            "UPDATE onboarding_steps SET completed_at = coalesce(completed_at, now())"
            " + interval '1 second', status = 'completed' WHERE session_id = $1"
            " AND step_number = 1"
        ),
    ),
    Corruption(
        "step_key",
        "postgres",
        False,
        _pg("UPDATE onboarding_steps SET step_key = 'x' WHERE session_id = $1 AND step_number = 3"),
    ),
    Corruption(
        "session_status",
        "postgres",
        False,
        _pg(
            "UPDATE onboarding_sessions SET status = CASE status WHEN 'completed'"
            " THEN 'in_progress' ELSE 'completed' END WHERE session_id = $1"
        ),
    ),
    Corruption(
        "session_percentage",
        "postgres",
        False,
        _pg(
            "UPDATE onboarding_sessions SET completion_percentage ="
            " abs(completion_percentage - 1) WHERE session_id = $1"
        ),
    ),
    Corruption(
        "session_workspace",
        "postgres",
        False,
        _pg("UPDATE onboarding_sessions SET workspace_id = 'ws-other' WHERE session_id = $1"),
    ),
    Corruption(
        "manifest_tampered",
        "postgres",
        True,
        _pg(
            "UPDATE business_context_manifests SET manifest = jsonb_set(manifest,"
            " '{company,name}', '\"Tampered\"') WHERE session_id = $1"
        ),
    ),
    Corruption(
        "manifest_checksum",
        "postgres",
        True,
        _pg(
            "UPDATE business_context_manifests SET checksum = repeat('0', 64) WHERE session_id = $1"
        ),
    ),
    Corruption(
        "manifest_deleted",
        "postgres",
        True,
        _pg("DELETE FROM business_context_manifests WHERE session_id = $1"),
    ),
    Corruption("redis_doc_gone", "redis", False, _redis_doc_gone),
    Corruption("redis_pointer_gone", "redis", False, _redis_pointer_gone),
    Corruption("redis_doc_altered", "redis", False, _redis_doc_altered),
    Corruption("redis_pointer_wrong", "redis", False, _redis_pointer_wrong),
    Corruption("legacy_drift", "drift", False, _legacy_changed),
    Corruption(
        "snapshot_tampered",
        "unrepairable",
        False,
        _pg(
            "UPDATE onboarding_sessions SET legacy_snapshot = jsonb_set(legacy_snapshot,"
            " '{current_step}', '\"tampered\"') WHERE session_id = $1"
        ),
    ),
)


async def plant_random(
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    count: int,
    *,
    seed: int,
    users: Sequence[str] | None = None,
) -> dict[str, Corruption]:
    """Plant ``count`` corruptions, one per user, kinds and users drawn at random (``seed``):
    user → what was planted. ``users`` limits the draw (default: every session)."""
    rng = random.Random(seed)
    sessions = await pool.fetch(
        "SELECT s.user_id, s.session_id, s.status FROM onboarding_sessions AS s"
        " WHERE $1::text[] IS NULL OR s.user_id = ANY($1::text[]) ORDER BY s.user_id",
        None if users is None else list(users),
    )
    picked = rng.sample(list(sessions), count)
    planted: dict[str, Corruption] = {}
    for session in picked:
        choices = [
            c for c in CORRUPTIONS if not c.needs_manifest or session["status"] == "completed"
        ]
        corruption = rng.choice(choices)
        await corruption.plant(pool, redis, session)
        planted[session["user_id"]] = corruption
    return planted
