"""PostgreSQL side of the migration core: the only module that runs SQL for a batch.

Everything is set-based: one statement (or one COPY) per kind of row for the whole batch, never a
round trip per user. The caller owns the transaction; these functions only run inside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg

import sql
from agents.core.catalog import STEPS
from agents.core.state import LedgerEntry, StoredSession
from schemas.legacy import LegacyRow
from schemas.rows import Row

# A connection, whether acquired from a pool (a proxy) or opened alone.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

# Errors that mean "PostgreSQL is not there right now / try again", not "the data is wrong".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.QueryCanceledError,
)

_SESSION_COLUMNS = (
    "session_id", "user_id", "workspace_id", "status", "current_step", "completion_percentage",
    "steps_completed", "legacy_snapshot", "legacy_sha256", "request_id", "created_at", "updated_at",
)  # fmt: skip
_CATALOG = (
    [step.number for step in STEPS],
    [step.key for step in STEPS],
    [step.required for step in STEPS],
)
_MANIFEST_COLUMNS = (
    "session_id", "user_id", "version", "manifest", "checksum", "token_estimate", "created_at",
)  # fmt: skip
_LEDGER_COLUMNS = (
    "request_id", "user_id", "action", "outcome", "source_partition", "source_offset",
    "processed_at",
)  # fmt: skip
_AUDIT_COLUMNS = (
    "request_id", "user_id", "action", "outcome", "error_code", "detail", "created_at",
)  # fmt: skip


def legacy_row_from_record(record: Row) -> LegacyRow:
    return LegacyRow(
        user_id=record["user_id"],
        workspace_id=record["workspace_id"],
        status=record["status"],
        current_step=record["current_step"],
        completed_steps=list(record["completed_steps"]),
        answers=record["answers"],
        updated_at=record["updated_at"],
    )


async def lock_legacy_rows(conn: Conn, user_ids: Sequence[str]) -> dict[str, LegacyRow]:
    records = await conn.fetch(sql.query("lock_legacy_rows"), list(user_ids))
    return {record["user_id"]: legacy_row_from_record(record) for record in records}


async def lock_sessions(conn: Conn, user_ids: Sequence[str]) -> dict[str, StoredSession]:
    records = await conn.fetch(sql.query("lock_sessions"), list(user_ids))
    return {
        record["user_id"]: StoredSession(
            **{**dict(record), "completion_percentage": float(record["completion_percentage"])}
        )
        for record in records
    }


async def ledger_entries(conn: Conn, request_ids: Sequence[UUID]) -> dict[UUID, LedgerEntry]:
    """Requests of the batch that already succeeded (the query's columns are the fields)."""
    records = await conn.fetch(sql.query("ledger_entries"), list(request_ids))
    return {record["request_id"]: LedgerEntry(**dict(record)) for record in records}


async def insert_sessions(
    conn: Conn,
    *,
    sessions: Sequence[tuple[Any, ...]],
    steps: Sequence[tuple[UUID, str, datetime]],
    manifests: Sequence[tuple[Any, ...]],
) -> None:
    """COPY new sessions and manifests (tuples in the column orders above); their steps as
    ``(session id, step codes, completed at)``, one per session, expanded by PostgreSQL."""
    if sessions:
        await conn.copy_records_to_table(
            "onboarding_sessions", records=sessions, columns=_SESSION_COLUMNS
        )
    if steps:
        session_ids, codes, completed_at = zip(*steps, strict=True)
        await conn.execute(sql.query("insert_steps"), session_ids, codes, completed_at, *_CATALOG)
    if manifests:
        await conn.copy_records_to_table(
            "business_context_manifests",
            records=manifests,
            columns=_MANIFEST_COLUMNS,
        )


async def mark_legacy_migrated(conn: Conn, user_ids: Sequence[str], now: datetime) -> None:
    if user_ids:
        await conn.execute(sql.query("mark_legacy_migrated"), list(user_ids), now)


async def delete_sessions(conn: Conn, session_ids: Sequence[UUID]) -> None:
    if session_ids:
        await conn.execute(sql.query("delete_sessions"), list(session_ids))


async def restore_legacy_rows(
    conn: Conn, snapshots: Sequence[Mapping[str, Any]]
) -> dict[str, LegacyRow]:
    """Write snapshots back and return the rows as PostgreSQL now holds them."""
    if not snapshots:
        return {}
    records = await conn.fetch(sql.query("restore_legacy_rows"), list(snapshots))
    return {record["user_id"]: legacy_row_from_record(record) for record in records}


async def insert_ledger(conn: Conn, entries: Sequence[tuple[Any, ...]]) -> None:
    if entries:
        await conn.copy_records_to_table(
            "migration_requests", records=entries, columns=_LEDGER_COLUMNS
        )


async def insert_audit(conn: Conn, rows: Sequence[tuple[Any, ...]]) -> None:
    if rows:
        await conn.copy_records_to_table(
            "onboarding_migration_log", records=rows, columns=_AUDIT_COLUMNS
        )


async def session_documents(
    conn: Conn | asyncpg.Pool, user_ids: Sequence[str]
) -> list[asyncpg.Record]:
    if not user_ids:
        return []
    return list(await conn.fetch(sql.query("session_documents"), list(user_ids)))


async def session_users_page(conn: Conn | asyncpg.Pool, after: str, limit: int) -> list[str]:
    return [r["user_id"] for r in await conn.fetch(sql.query("session_users_page"), after, limit)]


async def unmigrated_user_ids(pool: asyncpg.Pool, *, page_size: int = 10_000) -> list[str]:
    """Every legacy user not yet migrated, in user_id order, read page by page (keyset)."""
    found: list[str] = []
    after = ""
    while True:
        rows = await pool.fetch(sql.query("unmigrated_users_page"), after, page_size)
        if not rows:
            return found
        found += [row["user_id"] for row in rows]
        after = found[-1]


async def existing_session_ids(pool: Conn | asyncpg.Pool, session_ids: Sequence[UUID]) -> set[UUID]:
    rows = await pool.fetch(sql.query("existing_session_ids"), list(session_ids))
    return {row["session_id"] for row in rows}


async def users_with_sessions(pool: Conn | asyncpg.Pool, user_ids: Sequence[str]) -> set[str]:
    rows = await pool.fetch(sql.query("users_with_sessions"), list(user_ids))
    return {row["user_id"] for row in rows}


async def processed_records(
    conn: Conn, app_id: str, positions: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], tuple[bytes, dict[str, Any] | None]]:
    """Records of the batch already answered: position → (record digest, outcome or None)."""
    if not positions:
        return {}
    partitions, offsets = zip(*positions, strict=True)
    records = await conn.fetch(
        sql.query("processed_records"), app_id, list(partitions), list(offsets)
    )
    return {
        (r["source_partition"], r["source_offset"]): (bytes(r["record_digest"]), r["outcome"])
        for r in records
    }


async def forget_processed_records(
    conn: Conn, app_id: str, positions: Sequence[tuple[int, int]]
) -> None:
    if positions:
        partitions, offsets = zip(*positions, strict=True)
        await conn.execute(
            sql.query("forget_processed_records"), app_id, list(partitions), list(offsets)
        )


async def insert_processed_records(conn: Conn, rows: Sequence[tuple[Any, ...]]) -> None:
    """``(app id, partition, offset, digest, outcome or None, processed_at)`` tuples, by COPY."""
    if rows:
        await conn.copy_records_to_table(
            "processed_records",
            records=rows,
            columns=("app_id", "source_partition", "source_offset", "record_digest", "outcome",
                     "processed_at"),
        )  # fmt: skip


async def lock_counters(
    conn: Conn, app_id: str, partitions: Sequence[int]
) -> dict[int, dict[str, Any]]:
    records = await conn.fetch(sql.query("lock_counters"), app_id, list(partitions))
    return {r["source_partition"]: r["totals"] for r in records}


async def save_counters(
    conn: Conn, app_id: str, totals: Mapping[int, Mapping[str, Any]], now: datetime
) -> None:
    if totals:
        await conn.execute(
            sql.query("save_counters"), app_id, list(totals), list(totals.values()), now
        )


async def counters(conn: Conn | asyncpg.Pool, app_id: str) -> dict[int, dict[str, Any]]:
    records = await conn.fetch(sql.query("counters"), app_id)
    return {r["source_partition"]: r["totals"] for r in records}


async def mark_mirror_pending(conn: Conn, user_ids: Sequence[str], now: datetime) -> None:
    if user_ids:
        await conn.execute(sql.query("mark_mirror_pending"), list(user_ids), now)


async def lock_pending_mirrors(conn: Conn, limit: int) -> list[str]:
    return [r["user_id"] for r in await conn.fetch(sql.query("lock_pending_mirrors"), limit)]


async def clear_pending_mirrors(conn: Conn, user_ids: Sequence[str]) -> None:
    if user_ids:
        await conn.execute(sql.query("clear_pending_mirrors"), list(user_ids))


async def pending_mirror_count(conn: Conn | asyncpg.Pool) -> int:
    return int(await conn.fetchval(sql.query("pending_mirror_count")))


async def lock_legacy_users(conn: Conn, user_ids: Sequence[str]) -> None:
    if user_ids:
        await conn.execute(sql.query("lock_legacy_users"), list(user_ids))


async def ping(conn: Conn | asyncpg.Pool) -> None:
    """Raises unless PostgreSQL answers a trivial query."""
    await conn.fetchval("SELECT 1")


class ProgressCounts(NamedTuple):
    legacy_total: int
    migrated: int
    failed_for_good: int


async def progress_counts(
    conn: Conn | asyncpg.Pool, for_good_codes: Sequence[str]
) -> ProgressCounts:
    """How many legacy users there are, how many are migrated, and how many failed with a code
    only fixing the data cures (``for_good_codes``) and are not migrated."""
    row = await conn.fetchrow(sql.query("progress"), list(for_good_codes))
    assert row is not None  # an aggregate always answers one row
    return ProgressCounts(
        int(row["legacy_total"]), int(row["migrated"]), int(row["failed_for_good"])
    )


class ValidationRows(NamedTuple):
    """What ``validate`` reads of one user: None where PostgreSQL holds nothing."""

    session: Row | None  # the session document's columns (``session_documents``)
    snapshot: Row | None  # session id, legacy snapshot and its hash, every manifest version
    legacy: LegacyRow | None


async def validation_rows(pool: asyncpg.Pool, user_id: str) -> ValidationRows:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        sessions = await session_documents(conn, [user_id])
        snapshot = await conn.fetchrow(sql.query("session_for_validation"), user_id)
        legacy = await conn.fetchrow(sql.query("legacy_row"), user_id)
    return ValidationRows(
        sessions[0] if sessions else None,
        snapshot,
        legacy_row_from_record(legacy) if legacy is not None else None,
    )
