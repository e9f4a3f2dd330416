"""What the batch applier needs of its stores, as two small protocols.

``postgres_batch.PostgresStore`` and ``redis_mirror.RedisMirror`` are the real ones; unit tests hand
the applier an in-memory pair (``tests/support/fake_stores.py``) that can refuse a statement or be
down, so retry, halving and mirror repair are checked in milliseconds. The same scenarios run on
the real servers too.

A failure is signalled with the stores' own errors (``agents.stores.errors``), never the client
library's: ``StoreUnavailable`` for "PostgreSQL is not there" (or failed in a way that passes),
``AnsweredElsewhere`` for a record answered concurrently, ``StatementRefused`` for a statement
PostgreSQL refuses, ``MirrorUnavailable`` for anything Redis refuses. An implementation
translates its client's exceptions once, at this boundary; other exceptions are bugs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from agents.core.rows import AuditRow, LedgerRow, ManifestRow, ProcessedRow, SessionRow, StepsRow
from agents.core.state import LedgerEntry, StoredSession
from schemas.legacy import LegacyRow, UnreadableLegacyRow
from schemas.rows import Row

Position = tuple[int, int]  # (partition, offset) of a request record


class BatchTransaction(Protocol):
    """The statements of one batch, all inside one PostgreSQL transaction."""

    async def processed_records(
        self, app_id: str, positions: Sequence[Position]
    ) -> dict[Position, tuple[bytes, bytes | None]]: ...

    async def forget_processed_records(
        self, app_id: str, positions: Sequence[Position]
    ) -> None: ...

    async def insert_processed_records(self, rows: Sequence[ProcessedRow]) -> None: ...

    async def lock_legacy_rows(
        self, user_ids: Sequence[str]
    ) -> dict[str, LegacyRow | UnreadableLegacyRow]: ...

    async def lock_sessions(self, user_ids: Sequence[str]) -> dict[str, StoredSession]: ...

    async def ledger_entries(self, request_ids: Sequence[UUID]) -> dict[UUID, LedgerEntry]: ...

    async def insert_sessions(
        self,
        sessions: Sequence[SessionRow],
        steps: Sequence[StepsRow],
        manifests: Sequence[ManifestRow],
    ) -> None: ...

    async def mark_legacy_migrated(self, user_ids: Sequence[str], now: datetime) -> None: ...

    async def delete_sessions(self, session_ids: Sequence[UUID]) -> None: ...

    async def restore_legacy_rows(
        self, snapshots: Sequence[Mapping[str, Any]]
    ) -> dict[str, LegacyRow]: ...

    async def insert_ledger(self, rows: Sequence[LedgerRow]) -> None: ...

    async def insert_audit(self, rows: Sequence[AuditRow]) -> None: ...

    async def known_failures(self, user_ids: Sequence[str]) -> set[str]:
        """Those of the users whose migrate already failed for good (``effects.fails_for_good``)."""
        ...

    async def lock_counters(
        self, app_id: str, partitions: Sequence[int]
    ) -> dict[int, dict[str, Any]]: ...

    async def save_counters(
        self, app_id: str, totals: Mapping[int, Mapping[str, Any]], now: datetime
    ) -> None: ...

    async def session_documents(self, user_ids: Sequence[str]) -> list[Row]: ...

    async def mark_mirror_pending(self, user_ids: Sequence[str], now: datetime) -> None: ...


class BatchStore(Protocol):
    """PostgreSQL as the batch applier sees it."""

    def transaction(self) -> AbstractAsyncContextManager[BatchTransaction]:
        """A transaction that commits when the block ends and rolls back if it raises."""
        ...

    async def ping(self) -> None:
        """Returns if PostgreSQL answers; raises otherwise."""
        ...


class SessionMirror(Protocol):
    """Redis as the batch applier sees it."""

    async def write_sessions(
        self,
        documents: Sequence[Mapping[str, Any]],
        *,
        stale_sessions: Sequence[str],
        users_without_session: Sequence[str],
    ) -> None: ...
