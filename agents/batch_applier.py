"""Applying a batch of requests: one PostgreSQL transaction that also writes the Redis mirror.

The flow per batch is: answered before? (replay) → load (locked, set-based) → decide (pure) →
write (COPY / set-based) → remember each record's answer and advance the counters → mirror to
Redis while the rows are still locked → commit.

What an outcome says is what PostgreSQL committed, whatever happens next:
- Redis down does not fail a request. The users whose mirror could not be written are recorded
  as pending in the same transaction and repaired as soon as Redis answers (``mirror_repair``).
- PostgreSQL down does not turn the backlog into failures either: the batch waits until
  PostgreSQL answers again (``waiting_for`` says so to ``health``). Only tries that fail while
  PostgreSQL *does* answer use up the retry budget (a deadlock, a statement timeout), and once it
  is spent the batch's requests are answered ``database_unavailable``, recorded like any answer.
- A record answered before (same position, same bytes) gets its first answer again, unchanged:
  a redone batch never decides a dry run or a failure again against rows that already carry
  later requests' effects.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from pydantic_core import to_json
from redis.exceptions import RedisError

from agents.core import counters
from agents.core.decide import (
    AlreadyMigrated,
    Decision,
    Duplicate,
    Failed,
    Migrate,
    Rejected,
    Replayed,
    RollBack,
    Work,
    decide,
    waves,
)
from agents.core.documents import document_from_plan, document_from_row
from agents.core.manifest import MANIFEST_VERSION
from agents.core.outcomes import build_outcome, failed_outcome
from agents.core.retry import RetryPolicy
from agents.stores import postgres, redis_mirror
from agents.stores.protocol import BatchStore, BatchTransaction, SessionMirror
from agents.stores.rows import (
    AuditRow,
    LedgerRow,
    ManifestRow,
    ProcessedRow,
    SessionRow,
    StepsRow,
)
from schemas.events import ErrorCode, Outcome
from schemas.legacy import LegacyRow
from schemas.rows import JsonText

log = logging.getLogger(__name__)

# How often a batch is redone at once when another worker answered its records concurrently.
_CONFLICT_REDOS = 3
# How long to wait between two looks at a PostgreSQL that does not answer.
_OUTAGE_POLL_S = (0.2, 2.0)


class Unavailable(Exception):
    """PostgreSQL failed in a way that may pass: the batch can be tried again."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail


def utcnow() -> datetime:
    return datetime.now(UTC)


def _never() -> bool:
    return False


class _Texts:
    """Each outcome of a batch encoded to JSON once, for every row that stores it and for the
    record that publishes it."""

    def __init__(self) -> None:
        self._by_outcome: dict[int, tuple[Outcome, JsonText]] = {}

    def __or__(self, other: _Texts) -> _Texts:
        merged = _Texts()
        merged._by_outcome = {**self._by_outcome, **other._by_outcome}
        return merged

    def of(self, outcome: Outcome) -> JsonText:
        known = self._by_outcome.get(id(outcome))
        if known is None:
            known = self._by_outcome[id(outcome)] = (outcome, JsonText(to_json(outcome)))
        return known[1]


@dataclass
class Applied:
    """A batch's answers, in order, and the counter totals of its partitions after it."""

    outcomes: list[Outcome]
    totals: dict[int, counters.Counters] = field(default_factory=dict)
    mirror_pending: int = 0
    texts: _Texts = field(default_factory=_Texts)

    def __add__(self, other: Applied) -> Applied:
        return Applied(
            self.outcomes + other.outcomes,
            {**self.totals, **other.totals},
            self.mirror_pending + other.mirror_pending,
            self.texts | other.texts,
        )

    def encoded(self, outcome: Outcome) -> bytes:
        """The outcome's JSON, as stored in PostgreSQL for this batch (encoded once)."""
        return self.texts.of(outcome)


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
    """Owns nothing: the stores belong to the caller (a Faust service, a CLI, a unit test).

    ``app_id`` names the consumer group whose answers and counters the core keeps: each app id
    reads the request topic on its own, so it remembers and counts its own answers.
    """

    def __init__(
        self,
        store: BatchStore,
        mirror: SessionMirror,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
        app_id: str = "",
    ) -> None:
        self._store = store
        self._mirror = mirror
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._app_id = app_id
        # Set while a batch waits for PostgreSQL to come back; ``health`` shows it.
        self.waiting_for: str | None = None
        # Redis refused a write: batches record their users as pending without trying Redis
        # (no 5 s timeout per batch) until the repair loop finds Redis answering again.
        self.redis_down = False

    async def apply(
        self,
        batch: Sequence[Work],
        *,
        rejected: Sequence[Rejected] = (),
        abandoned: Callable[[], bool] = _never,
    ) -> Applied | None:
        """One outcome per request, in order. ``None`` only when ``abandoned()`` turned true
        while PostgreSQL was down (a rebalance took the records away: nothing was written)."""
        if not batch and not rejected:
            return Applied([])
        failures = conflicts = 0
        while True:
            try:
                return await self.apply_once(batch, rejected=rejected)
            except asyncpg.UniqueViolationError:
                # Another worker answered some of these records meanwhile (a zombie and the
                # partition's new owner, for a moment): the redo replays its answers.
                conflicts += 1
                if conflicts > _CONFLICT_REDOS:
                    return await self._isolate(batch, rejected, abandoned)
                log.info("batch of %d: answered concurrently elsewhere; redoing", len(batch))
                continue
            except Unavailable as exc:
                if not await self._postgres_answers():
                    if not await self._wait_for_postgres(exc, abandoned):
                        return None
                    continue
                failures += 1
                log.warning("batch of %d: %s (try %d)", len(batch), exc, failures)
                if failures > self._retry.max_retries:
                    return await self._give_up(batch, rejected, exc, abandoned)
                await asyncio.sleep(self._retry.delay(failures - 1, random.random()))
            except Exception as exc:  # noqa: BLE001 - a refused statement, or an outage
                if not await self._postgres_answers():
                    # PostgreSQL went away under the batch, and the client said so in its own
                    # words (a connection cut mid-protocol): an outage, not a bad request.
                    outage = Unavailable(ErrorCode.DATABASE_UNAVAILABLE, _describe(exc))
                    if not await self._wait_for_postgres(outage, abandoned):
                        return None
                    continue
                return await self._isolate(batch, rejected, abandoned)

    async def _isolate(
        self, batch: Sequence[Work], rejected: Sequence[Rejected], abandoned: Callable[[], bool]
    ) -> Applied | None:
        """Find the record the database refuses: halves keep per-user order; it fails alone."""
        if len(batch) <= 1:
            return await self._answer_internal_error(batch, rejected, abandoned)
        middle = len(batch) // 2
        first = await self.apply(batch[:middle], rejected=rejected, abandoned=abandoned)
        if first is None:
            return None
        second = await self.apply(batch[middle:], abandoned=abandoned)
        return None if second is None else first + second

    async def apply_once(
        self,
        batch: Sequence[Work],
        *,
        rejected: Sequence[Rejected] = (),
        forced: Callable[[Work], Outcome] | None = None,
    ) -> Applied:
        """A single try; raises ``Unavailable`` if PostgreSQL is down: the batch is redone.

        ``forced`` answers every new request without deciding or writing anything but the
        answer itself (used to record failures).
        """
        now = self._clock()
        mirror = _Mirror()
        texts = _Texts()
        try:
            async with self._store.transaction() as tx:
                known = await self._answered_before(tx, batch, rejected)
                results: dict[int, Outcome] = {}
                fresh: list[Work] = []
                for position, work in enumerate(batch):
                    if position in known.works:
                        results[position] = known.works[position]
                    else:
                        fresh.append(work)
                new_rejections = [
                    r for r in rejected if (r.partition, r.offset) not in known.rejected
                ]
                index = {id(work): position for position, work in enumerate(batch)}
                if forced is not None:
                    outcomes = [forced(work) for work in fresh]
                    await tx.insert_audit(
                        [
                            _audit_row(w, "Failed", o, texts.of(o), now)
                            for w, o in zip(fresh, outcomes, strict=True)
                        ]
                    )
                    for work, outcome in zip(fresh, outcomes, strict=True):
                        results[index[id(work)]] = outcome
                else:
                    for wave in waves(fresh):
                        wave_started = time.perf_counter()
                        outcomes = await self._apply_wave(
                            tx, wave, now, wave_started, mirror, texts
                        )
                        for work, outcome in zip(wave, outcomes, strict=True):
                            results[index[id(work)]] = outcome
                answered = [(work, results[index[id(work)]]) for work in fresh]
                await self._remember(tx, answered, new_rejections, now, texts)
                totals = await self._count(tx, answered, new_rejections, now)
                pending = await self._write_mirror(tx, mirror, now)
        except postgres.UNAVAILABLE as exc:
            raise Unavailable(ErrorCode.DATABASE_UNAVAILABLE, _describe(exc)) from exc
        return Applied([results[p] for p in range(len(batch))], totals, pending, texts)

    async def _answered_before(
        self, tx: BatchTransaction, batch: Sequence[Work], rejected: Sequence[Rejected]
    ) -> _Known:
        positions = [
            (w.partition, w.offset)
            for w in batch
            if w.partition is not None and w.offset is not None
        ] + [(r.partition, r.offset) for r in rejected]
        found = await tx.processed_records(self._app_id, positions)
        known = _Known()
        other_records: list[tuple[int, int]] = []
        for position, work in enumerate(batch):
            if work.partition is None or work.offset is None:
                continue
            hit = found.get((work.partition, work.offset))
            if hit is None:
                continue
            digest, outcome = hit
            if digest == work.digest and outcome is not None:
                known.works[position] = Outcome.model_validate(outcome)
            else:
                other_records.append((work.partition, work.offset))
        for rejection in rejected:
            hit = found.get((rejection.partition, rejection.offset))
            if hit is None:
                continue
            if hit[0] == rejection.digest and hit[1] is None:
                known.rejected.add((rejection.partition, rejection.offset))
            else:
                other_records.append((rejection.partition, rejection.offset))
        if other_records:
            log.warning(
                "positions %s hold other records than before: answered afresh", other_records[:5]
            )
            await tx.forget_processed_records(self._app_id, other_records)
        return known

    async def _remember(
        self,
        tx: BatchTransaction,
        answered: Sequence[tuple[Work, Outcome]],
        rejected: Sequence[Rejected],
        now: datetime,
        texts: _Texts,
    ) -> None:
        app_id = self._app_id
        rows = [
            ProcessedRow(
                app_id=app_id,
                source_partition=work.partition,
                source_offset=work.offset,
                record_digest=work.digest,
                outcome=texts.of(outcome),
                processed_at=now,
            )
            for work, outcome in answered
            if work.partition is not None and work.offset is not None
        ]
        rows += [ProcessedRow(app_id, r.partition, r.offset, r.digest, None, now) for r in rejected]
        await tx.insert_processed_records(rows)

    async def _count(
        self,
        tx: BatchTransaction,
        answered: Sequence[tuple[Work, Outcome]],
        rejected: Sequence[Rejected],
        now: datetime,
    ) -> dict[int, counters.Counters]:
        """Advance the counters of the batch's partitions by what was answered for the first
        time, in the same transaction: a counter never holds an answer PostgreSQL does not."""
        by_partition: dict[int, list[Outcome]] = defaultdict(list)
        latencies: dict[int, list[float | None]] = defaultdict(list)
        dead: dict[int, int] = defaultdict(int)
        now_ms = time.time() * 1000
        for work, outcome in answered:
            if work.partition is None:
                continue
            by_partition[work.partition].append(outcome)
            latencies[work.partition].append(
                None if work.timestamp_ms is None else max(0.0, now_ms - work.timestamp_ms)
            )
        for rejection in rejected:
            dead[rejection.partition] += 1
        partitions = sorted(set(by_partition) | set(dead))
        if not partitions:
            return {}
        stored = await tx.lock_counters(self._app_id, partitions)
        now_s = int(now_ms // 1000)
        totals = {
            p: counters.merge(
                stored.get(p) or counters.empty(),
                counters.batch_delta(
                    by_partition[p], latencies[p], dead_lettered=dead[p], now_s=now_s
                ),
                now_s=now_s,
            )
            for p in partitions
        }
        await tx.save_counters(self._app_id, totals, now)
        return totals

    async def _write_mirror(self, tx: BatchTransaction, mirror: _Mirror, now: datetime) -> int:
        """Write Redis while the users' rows are locked; if Redis fails, mark them pending.

        Writing before the commit, under the batch's row locks, orders every Redis write of a
        user like its PostgreSQL changes (a repair takes the same locks). Should the commit
        then fail, the records are redone and write the same documents again.
        """
        repair_rows = await tx.session_documents(sorted(mirror.to_repair))
        documents = dict(mirror.documents)
        repaired = {row["user_id"]: document_from_row(row) for row in repair_rows}
        for user in mirror.to_repair:
            documents.setdefault(user, repaired.get(user))
        if not documents:
            return 0
        if not self.redis_down:
            live = [doc for doc in documents.values() if doc is not None]
            keep = {doc["session_id"] for doc in live}
            try:
                await self._mirror.write_sessions(
                    live,
                    stale_sessions=sorted(mirror.stale_sessions - keep),
                    users_without_session=sorted(u for u, doc in documents.items() if doc is None),
                )
                return 0
            except (*redis_mirror.UNAVAILABLE, RedisError) as exc:
                # Whatever Redis says (down, loading, read-only, out of memory), PostgreSQL
                # holds the truth: the mirror is owed, the request is not failed.
                log.warning(
                    "Redis refused the mirror of %d users (%s): marked pending",
                    len(documents),
                    _describe(exc),
                )
                self.redis_down = True
        await tx.mark_mirror_pending(sorted(documents), now)
        return len(documents)

    async def _apply_wave(
        self,
        tx: BatchTransaction,
        wave: Sequence[Work],
        now: datetime,
        started: float,
        mirror: _Mirror,
        texts: _Texts,
    ) -> list[Outcome]:
        users = sorted({work.request.user_id for work in wave})
        legacy = await tx.lock_legacy_rows(users)
        sessions = await tx.lock_sessions(users)
        ledger = await tx.ledger_entries([w.request.request_id for w in wave])
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
        restored = await self._write_effects(tx, wave, decisions, now)
        # A request's share of its wave: the wave's statements are set-based, so the time spent
        # on one request is not separable; its share is the honest per-request figure.
        elapsed_ms = (time.perf_counter() - started) * 1000 / len(wave)
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
        ledger_rows: list[LedgerRow] = []
        audit_rows: list[AuditRow] = []
        for work, decision, outcome in zip(wave, decisions, outcomes, strict=True):
            mirror.note(work, decision, outcome)
            document = texts.of(outcome)
            if not work.request.dry_run and isinstance(
                decision, Migrate | AlreadyMigrated | RollBack
            ):
                ledger_rows.append(
                    LedgerRow(
                        request_id=work.request.request_id,
                        user_id=work.request.user_id,
                        action=work.request.action,
                        outcome=document,
                        source_partition=work.partition,
                        source_offset=work.offset,
                        processed_at=now,
                    )
                )
            audit_rows.append(_audit_row(work, type(decision).__name__, outcome, document, now))
        await tx.insert_ledger(ledger_rows)
        await tx.insert_audit(audit_rows)
        return outcomes

    async def _write_effects(
        self,
        tx: BatchTransaction,
        wave: Sequence[Work],
        decisions: Sequence[Decision],
        now: datetime,
    ) -> dict[str, LegacyRow]:
        """Write the wave's effects set-based; return legacy rows as restored by rollbacks."""
        sessions: list[SessionRow] = []
        steps: list[StepsRow] = []
        manifests: list[ManifestRow] = []
        migrated_users: list[str] = []
        rolled_back: list[UUID] = []
        snapshots: list[dict[str, Any]] = []
        restored: dict[str, LegacyRow] = {}
        for work, decision in zip(wave, decisions, strict=True):
            if isinstance(decision, Migrate) and not work.request.dry_run:
                plan = decision.plan
                migrated_users.append(plan.user_id)
                sessions.append(
                    SessionRow(
                        session_id=plan.session_id,
                        user_id=plan.user_id,
                        workspace_id=plan.workspace_id,
                        status=plan.status,
                        current_step=plan.current_step,
                        completion_percentage=plan.completion_percentage,
                        steps_completed=plan.steps_completed,
                        legacy_snapshot=plan.legacy_snapshot,
                        legacy_sha256=plan.legacy_sha256,
                        request_id=work.request.request_id,
                        created_at=now,
                        updated_at=now,
                    )
                )
                steps.append(StepsRow(plan.session_id, plan.step_codes, plan.completed_at))
                if plan.manifest is not None:
                    assert plan.manifest_checksum is not None and plan.token_estimate is not None
                    manifests.append(
                        ManifestRow(
                            session_id=plan.session_id,
                            user_id=plan.user_id,
                            version=MANIFEST_VERSION,
                            manifest=plan.manifest,
                            checksum=plan.manifest_checksum,
                            token_estimate=plan.token_estimate,
                            created_at=now,
                        )
                    )
            elif isinstance(decision, RollBack):
                if work.request.dry_run:
                    snapshot = decision.session.legacy_snapshot
                    restored[work.request.user_id] = LegacyRow.from_snapshot(snapshot)
                else:
                    rolled_back.append(decision.session.session_id)
                    snapshots.append(decision.session.legacy_snapshot)
        await tx.insert_sessions(sessions, steps, manifests)
        await tx.mark_legacy_migrated(migrated_users, now)
        await tx.delete_sessions(rolled_back)
        restored.update(await tx.restore_legacy_rows(snapshots))
        return restored

    async def _give_up(
        self,
        batch: Sequence[Work],
        rejected: Sequence[Rejected],
        last: Unavailable,
        abandoned: Callable[[], bool],
    ) -> Applied | None:
        message = f"gave up after {self._retry.max_retries + 1} tries: {last.detail}"
        return await self._record_failures(batch, rejected, last.code, message, abandoned)

    async def _answer_internal_error(
        self, batch: Sequence[Work], rejected: Sequence[Rejected], abandoned: Callable[[], bool]
    ) -> Applied | None:
        for work in batch:
            log.exception(
                "request %s failed unexpectedly",
                work.request.request_id,
                extra={"request_id": work.request.request_id, "user_id": work.request.user_id},
            )
        message = "unexpected error while applying the request; see the worker log"
        return await self._record_failures(
            batch, rejected, ErrorCode.INTERNAL_ERROR, message, abandoned
        )

    async def _record_failures(
        self,
        batch: Sequence[Work],
        rejected: Sequence[Rejected],
        code: ErrorCode,
        message: str,
        abandoned: Callable[[], bool],
    ) -> Applied | None:
        """Answer the batch's new requests ``failed``, recorded and counted like any answer,
        so a redelivery says the same and the counters match the topics."""
        now = self._clock()

        def failure(work: Work) -> Outcome:
            return failed_outcome(work, code, message, now=now, duration_ms=0.0)

        while True:
            try:
                return await self.apply_once(batch, rejected=rejected, forced=failure)
            except Unavailable as exc:
                if not await self._wait_for_postgres(exc, abandoned):
                    return None

    async def _postgres_answers(self) -> bool:
        try:
            await asyncio.wait_for(self._store.ping(), timeout=3)
        except Exception:  # noqa: BLE001 - any failure means "not answering"
            return False
        return True

    async def _wait_for_postgres(self, exc: Unavailable, abandoned: Callable[[], bool]) -> bool:
        """Wait until PostgreSQL answers; False if the batch was abandoned meanwhile."""
        self.waiting_for = f"PostgreSQL: {exc.detail}"
        log.warning("waiting for PostgreSQL (%s)", exc.detail)
        delay, ceiling = _OUTAGE_POLL_S
        try:
            while not abandoned():
                await asyncio.sleep(delay)
                delay = min(ceiling, delay * 2)
                if await self._postgres_answers():
                    log.info("PostgreSQL answers again")
                    return True
            return False
        finally:
            self.waiting_for = None


@dataclass
class _Known:
    """What the batch's positions were answered with before."""

    works: dict[int, Outcome] = field(default_factory=dict)  # batch index → first outcome
    rejected: set[tuple[int, int]] = field(default_factory=set)


def _audit_row(
    work: Work, decision: str, outcome: Outcome, document: JsonText, now: datetime
) -> AuditRow:
    # {"decision": …, "source": {"partition": …, "offset": …}, "outcome": <the outcome>}
    head = to_json(
        {"decision": decision, "source": {"partition": work.partition, "offset": work.offset}}
    )
    detail = JsonText(head[:-1] + b',"outcome":' + document + b"}")
    return AuditRow(
        request_id=work.request.request_id,
        user_id=work.request.user_id,
        action=work.request.action,
        outcome=outcome.outcome,
        error_code=outcome.error.code.value if outcome.error else None,
        detail=detail,
        created_at=now,
        run_id=work.request.run_id,
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


__all__ = ["Applied", "Failed", "MigrationCore", "Rejected", "Unavailable", "Work", "utcnow"]
