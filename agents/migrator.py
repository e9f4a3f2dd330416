"""Applying a batch of requests: one PostgreSQL transaction, then one Redis pipeline.

The flow per batch is load (locked, set-based) → decide (pure) → write (COPY / set-based) →
commit → mirror to Redis. A transient failure of either server raises ``Unavailable``; ``apply``
retries with bounded exponential backoff and, when the tries are spent, answers every request with
a retryable failure. Nothing is half-written: the transaction rolls back, and a Redis mirror that
missed a committed session is rewritten from PostgreSQL the next time the request is seen.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import redis.asyncio as aioredis

from agents import pg_store, redis_store
from agents.decide import (
    AlreadyMigrated,
    Decision,
    Duplicate,
    Failed,
    Migrate,
    Replayed,
    RollBack,
    Work,
    decide,
    waves,
)
from agents.documents import document_from_plan, document_from_row
from agents.outcomes import build_outcome, failed_outcome
from agents.retry import RetryPolicy
from schemas.events import ErrorCode, Outcome
from schemas.legacy import LegacyRow

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """PostgreSQL or Redis failed in a way that may pass: the batch can be tried again."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Mirror:
    """What Redis must look like for the batch's users once PostgreSQL has committed."""

    documents: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    stale_sessions: set[str] = field(default_factory=set)
    to_repair: set[str] = field(default_factory=set)

    def note(self, work: Work, decision: Decision, outcome: Outcome) -> None:
        if work.request.dry_run:
            return
        user = work.request.user_id
        if isinstance(decision, Migrate):
            self.documents[user] = document_from_plan(decision.plan)
        elif isinstance(decision, RollBack):
            self.stale_sessions.add(str(decision.session.session_id))
            self.documents[user] = None
        elif isinstance(decision, AlreadyMigrated | Replayed | Duplicate):
            if outcome.outcome == "rolled_back" and outcome.session_id is not None:
                self.stale_sessions.add(str(outcome.session_id))
            if user not in self.documents:
                self.to_repair.add(user)


class MigrationCore:
    """Owns nothing: the pool and the Redis client belong to the caller (a Faust service, a CLI)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._retry = retry or RetryPolicy()
        self._clock = clock

    async def apply(self, batch: Sequence[Work]) -> list[Outcome]:
        """One outcome per request, in order; never raises for a data or availability problem."""
        if not batch:
            return []
        last: Unavailable | None = None
        for attempt in range(self._retry.max_retries + 1):
            try:
                return await self.apply_once(batch)
            except Unavailable as exc:
                last = exc
                log.warning("batch of %d: %s (try %d)", len(batch), exc, attempt + 1)
                if attempt < self._retry.max_retries:
                    await asyncio.sleep(self._retry.delay(attempt, random.random()))
            except Exception:
                if len(batch) == 1:
                    log.exception("request %s failed unexpectedly", batch[0].request.request_id)
                    now = self._clock()
                    return [
                        failed_outcome(
                            batch[0],
                            ErrorCode.INTERNAL_ERROR,
                            "unexpected error while applying the request; see the worker log",
                            now=now,
                            duration_ms=0.0,
                        )
                    ]
                # Isolate the record the database refuses: halves keep per-user order.
                middle = len(batch) // 2
                return await self.apply(batch[:middle]) + await self.apply(batch[middle:])
        assert last is not None
        now = self._clock()
        message = f"gave up after {self._retry.max_retries + 1} tries: {last.detail}"
        return [failed_outcome(w, last.code, message, now=now, duration_ms=0.0) for w in batch]

    async def apply_once(self, batch: Sequence[Work]) -> list[Outcome]:
        """A single try; raises ``Unavailable`` if a server is down: the batch is redone."""
        started = time.perf_counter()
        now = self._clock()
        results: dict[int, Outcome] = {}
        mirror = _Mirror()
        index = {id(work): position for position, work in enumerate(batch)}
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                for wave in waves(batch):
                    outcomes = await self._apply_wave(conn, wave, now, started, mirror)
                    for work, outcome in zip(wave, outcomes, strict=True):
                        results[index[id(work)]] = outcome
                repair_rows = await pg_store.session_documents(conn, sorted(mirror.to_repair))
        except pg_store.UNAVAILABLE as exc:
            raise Unavailable(ErrorCode.DATABASE_UNAVAILABLE, _describe(exc)) from exc
        await self._write_mirror(mirror, repair_rows)
        return [results[position] for position in range(len(batch))]

    async def _apply_wave(
        self,
        conn: pg_store.Conn,
        wave: Sequence[Work],
        now: datetime,
        started: float,
        mirror: _Mirror,
    ) -> list[Outcome]:
        users = sorted({work.request.user_id for work in wave})
        legacy = await pg_store.lock_legacy_rows(conn, users)
        sessions = await pg_store.lock_sessions(conn, users)
        ledger = await pg_store.ledger_entries(conn, [w.request.request_id for w in wave])
        decisions = [
            decide(
                work,
                legacy=legacy.get(work.request.user_id),
                session=sessions.get(work.request.user_id),
                ledger=ledger.get(work.request.request_id),
                now=now,
            )
            for work in wave
        ]
        restored = await self._write_effects(conn, wave, decisions, now)
        elapsed_ms = (time.perf_counter() - started) * 1000
        outcomes = [
            build_outcome(
                work,
                decision,
                now=now,
                duration_ms=elapsed_ms,
                restored=restored.get(work.request.user_id),
            )
            for work, decision in zip(wave, decisions, strict=True)
        ]
        ledger_rows, audit_rows = [], []
        for work, decision, outcome in zip(wave, decisions, outcomes, strict=True):
            mirror.note(work, decision, outcome)
            document = outcome.model_dump(mode="json")
            if not work.request.dry_run and isinstance(
                decision, Migrate | AlreadyMigrated | RollBack
            ):
                ledger_rows.append(
                    (
                        work.request.request_id,
                        work.request.user_id,
                        work.request.action,
                        document,
                        work.partition,
                        work.offset,
                        now,
                    )
                )
            audit_rows.append(_audit_row(work, decision, outcome, document, now))
        await pg_store.insert_ledger(conn, ledger_rows)
        await pg_store.insert_audit(conn, audit_rows)
        return outcomes

    async def _write_effects(
        self,
        conn: pg_store.Conn,
        wave: Sequence[Work],
        decisions: Sequence[Decision],
        now: datetime,
    ) -> dict[str, LegacyRow]:
        """Write the wave's effects set-based; return legacy rows as restored by rollbacks."""
        sessions: list[tuple[Any, ...]] = []
        steps: list[tuple[Any, ...]] = []
        manifests: list[tuple[Any, ...]] = []
        migrated_users: list[str] = []
        rolled_back: list[UUID] = []
        snapshots: list[dict[str, Any]] = []
        restored: dict[str, LegacyRow] = {}
        for work, decision in zip(wave, decisions, strict=True):
            if isinstance(decision, Migrate) and not work.request.dry_run:
                plan = decision.plan
                migrated_users.append(plan.user_id)
                sessions.append(
                    (
                        plan.session_id,
                        plan.user_id,
                        plan.workspace_id,
                        plan.status,
                        plan.current_step,
                        plan.completion_percentage,
                        plan.steps_completed,
                        plan.legacy_snapshot,
                        plan.legacy_sha256,
                        work.request.request_id,
                        now,
                        now,
                    )
                )
                steps.extend(
                    (
                        plan.session_id,
                        s.step_number,
                        s.step_key,
                        s.status,
                        s.required,
                        s.completed_at,
                    )
                    for s in plan.steps
                )
                if plan.manifest is not None:
                    manifests.append(
                        (
                            plan.session_id,
                            plan.user_id,
                            1,
                            plan.manifest,
                            plan.manifest_checksum,
                            plan.token_estimate,
                            now,
                        )
                    )
            elif isinstance(decision, RollBack):
                if work.request.dry_run:
                    snapshot = decision.session.legacy_snapshot
                    restored[work.request.user_id] = LegacyRow.from_snapshot(snapshot)
                else:
                    rolled_back.append(decision.session.session_id)
                    snapshots.append(decision.session.legacy_snapshot)
        await pg_store.insert_sessions(conn, sessions=sessions, steps=steps, manifests=manifests)
        await pg_store.mark_legacy_migrated(conn, migrated_users, now)
        await pg_store.delete_sessions(conn, rolled_back)
        restored.update(await pg_store.restore_legacy_rows(conn, snapshots))
        return restored

    async def _write_mirror(self, mirror: _Mirror, repair_rows: Sequence[Any]) -> None:
        documents = dict(mirror.documents)
        repaired = {row["user_id"]: document_from_row(row) for row in repair_rows}
        for user in mirror.to_repair:
            documents.setdefault(user, repaired.get(user))
        live = [doc for doc in documents.values() if doc is not None]
        keep = {doc["session_id"] for doc in live}
        try:
            await redis_store.write_sessions(
                self._redis,
                live,
                stale_sessions=sorted(mirror.stale_sessions - keep),
                users_without_session=sorted(u for u, doc in documents.items() if doc is None),
            )
        except redis_store.UNAVAILABLE as exc:
            raise Unavailable(ErrorCode.CACHE_UNAVAILABLE, _describe(exc)) from exc


def _audit_row(
    work: Work, decision: Decision, outcome: Outcome, document: dict[str, Any], now: datetime
) -> tuple[Any, ...]:
    detail = {
        "decision": type(decision).__name__,
        "source": {"partition": work.partition, "offset": work.offset},
        "outcome": document,
    }
    code = outcome.error.code.value if outcome.error else None
    return (
        work.request.request_id,
        work.request.user_id,
        work.request.action,
        outcome.outcome,
        code,
        detail,
        now,
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


__all__ = ["Failed", "MigrationCore", "Unavailable", "Work", "utcnow"]
