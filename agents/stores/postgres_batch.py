"""A batch's statements in PostgreSQL: ``PostgresStore`` and its ``PostgresTransaction`` are
what ``protocol.BatchStore`` asks for, one connection and one transaction per batch.

Everything is set-based: one statement (or one COPY) per kind of row for the whole batch, never
a round trip per user. They raise the stores' own errors (``agents.stores.errors``), translated
from asyncpg's by ``postgres.translate_errors``: the batch applier and the fakes never name
asyncpg.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

import sql
from agents.core.rows import (
    AuditRow,
    LedgerRow,
    ManifestRow,
    ProcessedRow,
    SessionRow,
    StepsRow,
)
from agents.core.state import LedgerEntry, StoredSession
from agents.stores.postgres import (
    Conn,
    fetch_planned_afresh,
    legacy_row_from_record,
    ping,
    read_legacy_row,
    session_documents,
    steps_arguments,
    translate_errors,
)
from schemas.events import FOR_GOOD_CODES
from schemas.legacy import LegacyRow, UnreadableLegacyRow
from schemas.rows import Row


class PostgresStore:
    """``protocol.BatchStore`` over a pool: a batch borrows one connection for its transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        """Raises ``StoreUnavailable``, ``AnsweredElsewhere`` or ``StatementRefused`` for what
        asyncpg raises, in a statement, at BEGIN or at COMMIT."""
        with translate_errors():
            async with self.pool.acquire() as conn, conn.transaction():
                yield PostgresTransaction(conn)

    async def ping(self) -> None:
        with translate_errors():
            await ping(self.pool)


class PostgresTransaction:
    """``protocol.BatchTransaction``: the statements of one batch on one connection."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def processed_records(
        self, app_id: str, positions: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], tuple[bytes, bytes | None]]:
        """Records already answered: position → (record digest, the outcome's bytes or None).

        One primary-key probe per position (the query's shape), planned afresh each time: the
        pruner can leave the table nearly empty, and a generic plan cached while its statistics
        said so (after five runs on a connection) hashed the whole table on every later call
        until autovacuum analyzed it again: 92 ms a call at 200,000 rows against 0.2-0.4 ms by
        the index, 8 % of PostgreSQL's time on a 100,000-user flood. A custom plan reads the
        table's current size; the probes keep it from hashing the table for a large batch."""
        if not positions:
            return {}
        partitions, offsets = zip(*positions, strict=True)
        records = await fetch_planned_afresh(
            self.conn, "processed_records", app_id, list(partitions), list(offsets)
        )
        return {
            (r["source_partition"], r["source_offset"]): (bytes(r["record_digest"]), r["outcome"])
            for r in records
        }

    async def forget_processed_records(
        self, app_id: str, positions: Sequence[tuple[int, int]]
    ) -> None:
        if positions:
            partitions, offsets = zip(*positions, strict=True)
            await self.conn.execute(
                sql.query("forget_processed_records"), app_id, list(partitions), list(offsets)
            )

    async def insert_processed_records(self, rows: Sequence[ProcessedRow]) -> None:
        await self._copy("processed_records", rows, ProcessedRow._fields)

    async def lock_legacy_rows(
        self, user_ids: Sequence[str]
    ) -> dict[str, LegacyRow | UnreadableLegacyRow]:
        records = await self.conn.fetch(sql.query("lock_legacy_rows"), list(user_ids))
        return {record["user_id"]: read_legacy_row(record) for record in records}

    async def lock_sessions(self, user_ids: Sequence[str]) -> dict[str, StoredSession]:
        records = await self.conn.fetch(sql.query("lock_sessions"), list(user_ids))
        return {
            record["user_id"]: StoredSession(
                **{**dict(record), "completion_percentage": float(record["completion_percentage"])}
            )
            for record in records
        }

    async def ledger_entries(self, request_ids: Sequence[UUID]) -> dict[UUID, LedgerEntry]:
        """Requests of the batch that already took effect (the query's columns are the fields)."""
        records = await self.conn.fetch(sql.query("ledger_entries"), list(request_ids))
        return {record["request_id"]: LedgerEntry(**dict(record)) for record in records}

    async def insert_sessions(
        self,
        sessions: Sequence[SessionRow],
        steps: Sequence[StepsRow],
        manifests: Sequence[ManifestRow],
    ) -> None:
        """COPY new sessions and manifests; each session's 24 step rows are expanded by
        PostgreSQL from its step codes and the catalog."""
        await self._copy("onboarding_sessions", sessions, SessionRow._fields)
        if steps:
            await self.conn.execute(sql.query("insert_steps"), *steps_arguments(steps))
        await self._copy("business_context_manifests", manifests, ManifestRow._fields)

    async def mark_legacy_migrated(self, user_ids: Sequence[str], now: datetime) -> None:
        if user_ids:
            await self.conn.execute(sql.query("mark_legacy_migrated"), list(user_ids), now)

    async def delete_sessions(self, session_ids: Sequence[UUID]) -> None:
        if session_ids:
            await self.conn.execute(sql.query("delete_sessions"), list(session_ids))

    async def restore_legacy_rows(
        self, snapshots: Sequence[Mapping[str, Any]]
    ) -> dict[str, LegacyRow]:
        """Write snapshots back and return the rows as PostgreSQL now holds them."""
        if not snapshots:
            return {}
        records = await self.conn.fetch(sql.query("restore_legacy_rows"), list(snapshots))
        return {record["user_id"]: legacy_row_from_record(record) for record in records}

    async def insert_ledger(self, rows: Sequence[LedgerRow]) -> None:
        await self._copy("migration_requests", rows, LedgerRow._fields)

    async def insert_audit(self, rows: Sequence[AuditRow]) -> None:
        await self._copy("onboarding_migration_log", rows, AuditRow._fields)

    async def known_failures(self, user_ids: Sequence[str]) -> set[str]:
        records = await self.conn.fetch(
            sql.query("known_failures"), list(user_ids), list(FOR_GOOD_CODES)
        )
        return {record["user_id"] for record in records}

    async def lock_counters(
        self, app_id: str, partitions: Sequence[int]
    ) -> dict[int, dict[str, Any]]:
        records = await self.conn.fetch(sql.query("lock_counters"), app_id, list(partitions))
        return {r["source_partition"]: r["totals"] for r in records}

    async def save_counters(
        self, app_id: str, totals: Mapping[int, Mapping[str, Any]], now: datetime
    ) -> None:
        if totals:
            await self.conn.execute(
                sql.query("save_counters"), app_id, list(totals), list(totals.values()), now
            )

    async def session_documents(self, user_ids: Sequence[str]) -> list[Row]:
        return list(await session_documents(self.conn, user_ids))

    async def mark_mirror_pending(self, user_ids: Sequence[str], now: datetime) -> None:
        if user_ids:
            await self.conn.execute(sql.query("mark_mirror_pending"), list(user_ids), now)

    async def _copy(
        self, table: str, rows: Sequence[tuple[Any, ...]], columns: Sequence[str]
    ) -> None:
        if rows:
            await self.conn.copy_records_to_table(table, records=rows, columns=list(columns))
