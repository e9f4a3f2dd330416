"""PostgreSQL, the source of truth: the statements the jobs, the views and the worker's
services run, the errors asyncpg raises and their translation into the stores' own.

A batch's statements are ``postgres_batch``'s (the hot path). Everything is set-based: one
statement (or one COPY) per kind of row, never a round trip per user. Every statement's text is
a file of ``sql/queries``.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any, NamedTuple, TypeAlias
from uuid import UUID

import asyncpg

import sql
from agents.core.catalog import STEPS
from agents.core.rows import StepsRow
from agents.stores.errors import (
    AnsweredElsewhere,
    StatementRefused,
    StoreError,
    StoreUnavailable,
    describe,
)
from schemas.events import FOR_GOOD_CODES
from schemas.legacy import LegacyRow, UnreadableLegacyRow, legacy_row_or_problem
from schemas.rows import Row

# A connection, whether acquired from a pool (a proxy) or opened alone.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
# The pool and a lone connection, named here so that callers need not import asyncpg for a hint.
Pool: TypeAlias = asyncpg.Pool
Connection: TypeAlias = asyncpg.Connection
Record: TypeAlias = asyncpg.Record

# Errors that mean "PostgreSQL is not there right now / try again", not "the data is wrong".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    # A connection whose server went away mid-protocol (asyncpg issue #784).
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.QueryCanceledError,
)

# Whatever a call of this module can raise when PostgreSQL says no (away, or a statement refused),
# translated or not: the views answer 503 for these without knowing the client library.
FAILED: tuple[type[BaseException], ...] = (*UNAVAILABLE, asyncpg.PostgresError, StoreError)


@contextmanager
def translate_errors() -> Iterator[None]:
    """Raise asyncpg's exceptions (and the socket's) as the stores' own, with the original as
    ``__cause__``; anything else (a bug above the store) passes unchanged."""
    try:
        yield
    except StoreError:
        raise
    except UNAVAILABLE as exc:
        raise StoreUnavailable(describe(exc)) from exc
    except asyncpg.UniqueViolationError as exc:
        raise AnsweredElsewhere(describe(exc)) from exc
    except asyncpg.PostgresError as exc:
        raise StatementRefused(describe(exc)) from exc


_CATALOG = (
    [step.number for step in STEPS],
    [step.key for step in STEPS],
    [step.required for step in STEPS],
)


def steps_arguments(rows: Sequence[StepsRow]) -> tuple[Any, ...]:
    """The arguments of ``insert_steps.sql`` for these sessions (at least one): the query
    reads each session's step codes as bytes (it says why)."""
    return (
        [row.session_id for row in rows],
        [row.step_codes.encode("ascii") for row in rows],
        [row.completed_at for row in rows],
        *_CATALOG,
    )


def legacy_row_from_record(record: Row) -> LegacyRow:
    """A row known to fit the model (one written back from a snapshot)."""
    row = read_legacy_row(record)
    if isinstance(row, UnreadableLegacyRow):
        raise ValueError(f"legacy row of {row.user_id}: {row.problem}")
    return row


def read_legacy_row(record: Row) -> LegacyRow | UnreadableLegacyRow:
    """A row as the legacy system left it: any row its columns allow, readable or not."""
    return legacy_row_or_problem(
        {
            "user_id": record["user_id"],
            "workspace_id": record["workspace_id"],
            "status": record["status"],
            "current_step": record["current_step"],
            "completed_steps": list(record["completed_steps"]),
            "answers": record["answers"],
            "updated_at": record["updated_at"],
        }
    )


async def session_documents(
    conn: Conn | asyncpg.Pool, user_ids: Sequence[str]
) -> list[asyncpg.Record]:
    """The sessions of ``user_ids`` with their steps, planned afresh on every call.

    A cached generic plan made while the tables were nearly empty (a new migration, before
    autovacuum's next analyze) read every step row on every later call: 113 ms a call for one
    user at 100,000 sessions, and the re-validation sampler calls it all through a flood
    (``sql/queries/session_documents.sql`` says how the statement itself avoids the same trap)."""
    if not user_ids:
        return []
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as held:
            return await session_documents(held, user_ids)
    if not conn.is_in_transaction():
        async with conn.transaction():
            return await _session_documents(conn, user_ids)
    return await _session_documents(conn, user_ids)


async def _session_documents(conn: Conn, user_ids: Sequence[str]) -> list[asyncpg.Record]:
    return await fetch_planned_afresh(conn, "session_documents", list(user_ids))


async def fetch_planned_afresh(conn: Conn, name: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of query ``name``, planned for these arguments and the tables' current size,
    never by a cached generic plan (``custom_plans``); inside the caller's transaction."""
    await conn.execute(sql.query("custom_plans"))
    records = await conn.fetch(sql.query(name), *args)
    await conn.execute(sql.query("reset_plans"))  # a failure rolls both back anyway
    return list(records)


async def session_users_page(conn: Conn | asyncpg.Pool, after: str, limit: int) -> list[str]:
    return [r["user_id"] for r in await conn.fetch(sql.query("session_users_page"), after, limit)]


async def unmigrated_user_ids(
    pool: Conn | asyncpg.Pool, *, page_size: int = 10_000
) -> AsyncIterator[list[str]]:
    """Every legacy user not yet migrated, in user_id order, one page at a time (keyset: each
    page starts after the last id of the one before, through the partial index)."""
    after = ""
    while True:
        rows = await pool.fetch(sql.query("unmigrated_users_page"), after, page_size)
        if not rows:
            return
        page = [row["user_id"] for row in rows]
        yield page
        after = page[-1]


async def existing_session_ids(pool: Conn | asyncpg.Pool, session_ids: Sequence[UUID]) -> set[UUID]:
    rows = await pool.fetch(sql.query("existing_session_ids"), list(session_ids))
    return {row["session_id"] for row in rows}


async def users_with_sessions(pool: Conn | asyncpg.Pool, user_ids: Sequence[str]) -> set[str]:
    rows = await pool.fetch(sql.query("users_with_sessions"), list(user_ids))
    return {row["user_id"] for row in rows}


async def counters(conn: Conn | asyncpg.Pool, app_id: str) -> dict[int, dict[str, Any]]:
    records = await conn.fetch(sql.query("counters"), app_id)
    return {r["source_partition"]: r["totals"] for r in records}


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
    await conn.fetchval(sql.query("ping"))


class ProgressCounts(NamedTuple):
    legacy_total: int
    migrated: int
    failed_for_good: int

    @property
    def remaining(self) -> int:
        """Users still to migrate: neither migrated nor failed for a reason only data cures."""
        return max(0, self.legacy_total - self.migrated - self.failed_for_good)


async def progress_counts(conn: Conn | asyncpg.Pool) -> ProgressCounts:
    """How many legacy users there are, how many are migrated, and how many failed with a code
    only fixing the data cures (``FOR_GOOD_CODES``) and are not migrated."""
    row = await conn.fetchrow(sql.query("progress"), list(FOR_GOOD_CODES))
    assert row is not None  # an aggregate always answers one row
    return ProgressCounts(
        int(row["legacy_total"]), int(row["migrated"]), int(row["failed_for_good"])
    )


class ValidationRows(NamedTuple):
    """What ``validate`` reads of one user: None where PostgreSQL holds nothing."""

    session: Row | None  # the session document's columns (``session_documents``)
    snapshot: Row | None  # session id, legacy snapshot and its hash, every manifest version
    legacy: LegacyRow | UnreadableLegacyRow | None
    latest_effect: Row | None  # ``outcome`` and ``event`` of the latest migrate or rollback


async def validation_rows(pool: asyncpg.Pool, user_id: str) -> ValidationRows:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        return await validation_rows_on(conn, user_id)


class UserBusy(StoreError):
    """A user's legacy row stayed locked past the wait: a writer holds it (a batch, a repair)."""


@asynccontextmanager
async def user_held(pool: asyncpg.Pool, user_id: str, wait_s: float) -> AsyncIterator[Conn]:
    """A connection holding a share lock on the user's legacy row, for reads that must not see
    a writer halfway. Every writer of a user's session and mirror holds that row ``FOR UPDATE``
    while it writes Redis and until PostgreSQL commits; the share lock waits for such a writer
    to finish and keeps the next one out until the reads are done (reads block nobody else)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = {max(1, int(wait_s * 1000))}")
        try:
            await conn.execute(sql.query("share_legacy_row"), user_id)
        except asyncpg.exceptions.LockNotAvailableError as exc:
            raise UserBusy(
                f"user {user_id!r} is being written (its legacy row stayed locked over"
                f" {wait_s:g} s); try again"
            ) from exc
        yield conn


async def validation_rows_on(conn: Conn, user_id: str) -> ValidationRows:
    """``validation_rows`` on a connection the caller holds, inside its transaction (the
    preflight's rehearsal reads what its own uncommitted transaction wrote)."""
    sessions = await session_documents(conn, [user_id])
    snapshot = await conn.fetchrow(sql.query("session_for_validation"), user_id)
    legacy = await conn.fetchrow(sql.query("legacy_row"), user_id)
    effect = await conn.fetchrow(sql.query("latest_effect"), user_id)
    return ValidationRows(
        sessions[0] if sessions else None,
        snapshot,
        read_legacy_row(legacy) if legacy is not None else None,
        effect,
    )


async def try_advisory_lock(conn: Conn, key: int) -> bool:
    """Take the session-level advisory lock ``key`` if free (one worker runs a job at a time)."""
    return bool(await conn.fetchval(sql.query("try_advisory_lock"), key))


async def advisory_lock(conn: Conn, key: int) -> None:
    """Wait for the session-level advisory lock ``key``."""
    await conn.execute(sql.query("advisory_lock"), key)


async def advisory_unlock(conn: Conn, key: int) -> None:
    await conn.execute(sql.query("advisory_unlock"), key)


async def prune_processed_records(
    conn: Conn,
    *,
    app_id: str,
    partition: int,
    below_offset: int,
    given_before: datetime,
    limit: int,
) -> int:
    """Delete at most ``limit`` answers of ``partition`` below ``below_offset`` given before
    ``given_before`` (one short transaction); how many went."""
    status = await conn.execute(
        sql.query("prune_processed_records"), app_id, partition, below_offset, given_before, limit
    )
    return int(status.rsplit(" ", 1)[-1])


async def rehearsal_sample(conn: Conn, size: int) -> list[str]:
    """``size`` random legacy users a rollout would migrate (not migrated, no session)."""
    return [r["user_id"] for r in await conn.fetch(sql.query("rehearsal_sample"), size)]


class ServerFacts(NamedTuple):
    """What ``migrator preflight`` judges of the PostgreSQL server."""

    server_version: str
    max_connections: int
    reserved_connections: int
    connections_in_use: int
    synchronous_commit: str
    fsync: str
    schema_recorded: bool  # the schema_migrations table exists
    data_directory: str | None  # None: this role may not see it


async def server_facts(conn: Conn) -> ServerFacts:
    row = await conn.fetchrow(sql.query("preflight_settings"))
    assert row is not None
    try:
        directory = await conn.fetchval(sql.query("data_directory"))
    except asyncpg.InsufficientPrivilegeError:
        directory = None
    return ServerFacts(**dict(row), data_directory=directory)


async def applied_schema(conn: Conn) -> dict[int, tuple[str, str]]:
    """``schema_migrations``: version → (file name, sha256)."""
    rows = await conn.fetch(sql.query("schema_migrations"))
    return {r["version"]: (r["name"], r["sha256"]) for r in rows}


class TableSize(NamedTuple):
    table: str
    total_bytes: int
    rows_estimate: int | None  # live rows per PostgreSQL's statistics; None: none kept yet


async def table_sizes(conn: Conn | asyncpg.Pool) -> list[TableSize]:
    """Every table of the schema, with its size on disk (indexes and TOAST included)."""
    rows = await conn.fetch(sql.query("table_sizes"))
    return [
        TableSize(
            r["table_name"],
            int(r["total_bytes"]),
            int(r["rows_estimate"]) if r["rows_estimate"] is not None else None,
        )
        for r in rows
    ]


async def insert_new_legacy_rows(
    conn: Conn, rows: Sequence[tuple[Any, ...]], columns: Sequence[str]
) -> int:
    """Insert the legacy rows whose user is not there yet (in one transaction); how many were.

    Rows go through a temporary table by COPY, then one INSERT … ON CONFLICT DO NOTHING: the
    fastest way to write many rows and skip those present."""
    await conn.execute(sql.query("seed_legacy_table"))
    async with conn.transaction():
        await conn.copy_records_to_table("seed_legacy", records=rows, columns=list(columns))
        status = await conn.execute(sql.query("insert_seeded_legacy_rows"))
    return int(status.rsplit(" ", 1)[1])


async def rolled_back_user_ids(conn: Conn | asyncpg.Pool) -> set[str]:
    """Users not migrated now who were rolled back (not as a dry run)."""
    return {r["user_id"] for r in await conn.fetch(sql.query("rolled_back_users"))}


async def failed_for_good_user_ids(conn: Conn | asyncpg.Pool) -> set[str]:
    """The users ``progress_counts`` counts as failed for good (not as a dry run)."""
    rows = await conn.fetch(sql.query("failed_for_good_users"), list(FOR_GOOD_CODES))
    return {r["user_id"] for r in rows}


class Selection(NamedTuple):
    """Everyone not yet migrated, in user_id order, but the cohorts held out, and how many
    users each cohort held out."""

    users: list[str]
    held_rolled_back: int
    held_failed: int


async def unmigrated_selection(
    pool: asyncpg.Pool,
    *,
    include_rolled_back: bool,
    include_failed: bool = False,
) -> Selection:
    """Every legacy user not yet migrated, but (unless included) users rolled back and not
    migrated since, and users whose migration failed for good."""
    rolled_back = set() if include_rolled_back else await rolled_back_user_ids(pool)
    failed = set() if include_failed else await failed_for_good_user_ids(pool)
    kept: list[str] = []
    held_rolled_back = held_failed = 0
    async for page in unmigrated_user_ids(pool):
        for user in page:
            if user in rolled_back:
                held_rolled_back += 1
            elif user in failed:
                held_failed += 1
            else:
                kept.append(user)
    return Selection(kept, held_rolled_back, held_failed)


async def session_count(conn: Conn | asyncpg.Pool) -> int:
    return int(await conn.fetchval(sql.query("session_count")))


async def save_worker_status(
    conn: Conn | asyncpg.Pool,
    *,
    app_id: str,
    worker: str,
    partitions: Sequence[int],
    lag: Mapping[int, int],
    in_flight: int,
    rss_bytes: int | None,
    started_at: datetime,
    paused: bool = False,
    revalidation: Mapping[str, Any] | None = None,
) -> None:
    await conn.execute(
        sql.query("save_worker_status"),
        app_id,
        worker,
        list(partitions),
        {str(p): n for p, n in lag.items()},
        in_flight,
        rss_bytes,
        started_at,
        paused,
        None if revalidation is None else dict(revalidation),
    )


async def worker_statuses(
    conn: Conn | asyncpg.Pool, app_id: str, *, within_s: float
) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql.query("worker_statuses"), app_id, within_s))


async def failure_samples(conn: Conn | asyncpg.Pool, *, sample: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql.query("failure_samples"), sample))


# Re-validation picks (the background sampler), read-only: both read a bounded number of pages
# (the audit log's primary key; 100 tuple positions of the sessions' table), so a pick costs the
# same on ten thousand users as on ten million.

# "Recently migrated": among the audit log's latest rows.
RECENT_ROWS = 5_000


async def recent_migrated_users(conn: Conn | asyncpg.Pool, count: int) -> list[str]:
    """Up to ``count`` users migrated recently, starting at a random recent answer."""
    latest = await conn.fetchval(sql.query("latest_audit_id"))
    if latest is None:
        return []
    start = max(0, int(latest) - random.randrange(RECENT_ROWS))
    rows = await conn.fetch(sql.query("recent_migrated_users"), start, count)
    return [row["user_id"] for row in rows]


async def any_migrated_user(conn: Conn | asyncpg.Pool) -> str | None:
    """The user of a session picked uniformly (``any_session_user.sql`` says how); None when
    there is none, or, rarely, when a few rounds of random positions all missed."""
    for _ in range(3):
        user = await conn.fetchval(sql.query("any_session_user"))
        if user is not None:
            return str(user)
    return None
