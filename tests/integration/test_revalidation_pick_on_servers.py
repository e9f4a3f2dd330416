"""The re-validation sampler's pick of "any" migrated user, on a real PostgreSQL: spread over
every session, although session ids grow with time (a random id sorts after all of them)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime

import asyncpg

from agents.core.planner import session_id_for
from agents.stores.postgres import any_migrated_user

SESSIONS = 3_000
PICKS = 600


async def test_picks_are_spread_over_every_session(own_database: asyncpg.Connection) -> None:
    conn = own_database
    assert await any_migrated_user(conn) is None  # no session yet
    now = datetime.now(UTC)
    start_ms = 1_796_000_000_000
    rows = []
    for n in range(SESSIONS):
        user, request = f"user-{n:05d}", uuid.uuid4()
        session = session_id_for(user, request, start_ms + 7 * n)
        rows.append((session, user, "not_started", 0, 0, "{}", "0" * 64, request, now, now))
    await conn.copy_records_to_table(
        "onboarding_sessions",
        records=rows,
        columns=[
            "session_id",
            "user_id",
            "status",
            "completion_percentage",
            "steps_completed",
            "legacy_snapshot",
            "legacy_sha256",
            "request_id",
            "created_at",
            "updated_at",
        ],
    )
    picks = Counter([await any_migrated_user(conn) for _ in range(PICKS)])
    assert None not in picks
    # Uniform picks would give about 550 distinct users and at most a handful of repeats each.
    assert len(picks) > PICKS // 2, picks.most_common(3)
    assert max(picks.values()) <= 10, picks.most_common(3)
    # From every part of the table: each tenth of the users by age is picked.
    assert {int(user[5:]) * 10 // SESSIONS for user in picks} == set(range(10))
