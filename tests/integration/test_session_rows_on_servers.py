"""What PostgreSQL makes of a new session's rows: the 24 step rows it spells out from the step
codes, and the format checks on the two checksum columns (``018``), on a real server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from agents.core.catalog import STEPS
from agents.core.rows import ManifestRow, SessionRow, StepsRow
from agents.stores.postgres_batch import PostgresTransaction

DIGEST = "0123456789abcdef" * 4


def _session(user_id: str, legacy_sha256: str = DIGEST) -> SessionRow:
    now = datetime.now(UTC)
    sid = uuid.uuid4()
    return SessionRow(
        sid, user_id, None, "in_progress", 2, 4.17, 1, {}, legacy_sha256, sid, now, now
    )


def _manifest(session: SessionRow, checksum: str = DIGEST) -> ManifestRow:
    return ManifestRow(session.session_id, session.user_id, 1, {}, checksum, 1, session.created_at)


async def test_each_step_row_has_the_status_its_code_says_and_a_time_only_when_completed(
    own_database: asyncpg.Connection,
) -> None:
    conn = own_database
    codes = {"all-done": "c" * 24, "mixed": "cspp" * 6, "none": "p" * 24, "skips": "cs" * 12}
    done_at = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)
    sessions = {name: _session(f"steps-{name}") for name in codes}
    steps = [StepsRow(sessions[name].session_id, code, done_at) for name, code in codes.items()]
    async with conn.transaction():
        await PostgresTransaction(conn).insert_sessions(list(sessions.values()), steps, [])
    word = {"c": "completed", "s": "skipped", "p": "pending"}
    for name, code in codes.items():
        rows = await conn.fetch(
            "SELECT step_number, step_key, status, required, completed_at FROM onboarding_steps"
            " WHERE session_id = $1 ORDER BY step_number",
            sessions[name].session_id,
        )
        assert [tuple(row) for row in rows] == [
            (
                step.number,
                step.key,
                word[letter],
                step.required,
                done_at if letter == "c" else None,
            )
            for step, letter in zip(STEPS, code, strict=True)
        ]


@pytest.mark.parametrize(
    "digest",
    [
        DIGEST.upper(),
        DIGEST[:-1],
        DIGEST + "0",
        DIGEST[:-1] + "g",
        DIGEST[:-1] + "\n",
        "é" + DIGEST[1:],
        " " + DIGEST[1:],
        "",
    ],
    ids=["upper", "short", "long", "not-hex", "newline", "non-ascii", "space", "empty"],
)
async def test_a_checksum_that_is_not_64_lower_case_hex_digits_is_refused(
    own_database: asyncpg.Connection, digest: str
) -> None:
    conn = own_database
    store = PostgresTransaction(conn)
    with pytest.raises(asyncpg.CheckViolationError, match="legacy_sha256_check"):
        async with conn.transaction():
            await store.insert_sessions([_session("bad-legacy", legacy_sha256=digest)], [], [])
    session = _session("bad-manifest")
    with pytest.raises(asyncpg.CheckViolationError, match="checksum_check"):
        async with conn.transaction():
            await store.insert_sessions([session], [], [_manifest(session, checksum=digest)])


async def test_a_checksum_of_64_lower_case_hex_digits_is_taken(
    own_database: asyncpg.Connection,
) -> None:
    conn = own_database
    session = _session("good")
    async with conn.transaction():
        await PostgresTransaction(conn).insert_sessions([session], [], [_manifest(session)])
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM business_context_manifests WHERE session_id = $1",
            session.session_id,
        )
        == 1
    )
