"""One try of a batch: one PostgreSQL transaction that also writes the Redis mirror.

The flow is: answered before? (replay) → per wave: load (locked, set-based) → decide (pure) →
write the effects (``agents.core.effects``, COPY / set-based) → record the answers → remember
each record's answer and advance the counters → mirror to Redis while the rows are still locked
→ commit. What to do when a try fails is ``batch_applier``'s business.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime

from agents.core import counters
from agents.core.control_state import judged
from agents.core.decide import Rejected, Work, decide, waves
from agents.core.documents import document_from_row
from agents.core.effects import (
    Answer,
    MirrorPlan,
    answer,
    answer_rows,
    audit_row,
    fails_for_good,
    plan_effects,
    processed_rows,
)
from agents.core.outcomes import build_outcome
from agents.stores.errors import MirrorUnavailable, StoreUnavailable
from agents.stores.protocol import BatchStore, BatchTransaction, SessionMirror
from schemas.events import ErrorCode, Outcome, parse_outcome_json
from schemas.rows import JsonText

log = logging.getLogger(__name__)


# A span around one stage of a try, named ``postgresql transaction`` or ``redis mirror``: the
# worker's tracing (``streams.tracing``) hands one in; nothing is traced without it.
Stage = Callable[[str], AbstractContextManager[object]]
POSTGRES_STAGE = "postgresql transaction"
REDIS_STAGE = "redis mirror"
_NO_SPAN: AbstractContextManager[object] = nullcontext()


def no_stage(name: str) -> AbstractContextManager[object]:
    return _NO_SPAN


class Unavailable(Exception):
    """PostgreSQL failed in a way that may pass: the batch can be tried again."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail


@dataclass
class Applied:
    """A batch's answers in work order, and the counter totals of its partitions after it.

    ``repeats``: the positions (in work order) of failures the service had already reported for
    the same user and reason (a user failing for good, sent again unchanged). They are answered
    like any failure; the failure budget leaves them out, as they say nothing new of a rollout.
    """

    answers: list[Answer]
    totals: dict[int, counters.Counters] = field(default_factory=dict)
    mirror_pending: int = 0
    repeats: frozenset[int] = frozenset()

    @classmethod
    def of(cls, outcomes: Sequence[Outcome], totals: dict[int, counters.Counters]) -> Applied:
        """Answers made from outcomes (each encoded here): for stand-ins in tests."""
        return cls([answer(outcome) for outcome in outcomes], totals)

    @property
    def outcomes(self) -> list[Outcome]:
        return [a.outcome for a in self.answers]

    @property
    def judged(self) -> list[Outcome]:
        """The outcomes the failure budget judges, in one place: neither the repeated failures
        nor the answers of a cancelled run (``control_state.judged``)."""
        return judged([a.outcome for p, a in enumerate(self.answers) if p not in self.repeats])

    def __add__(self, other: Applied) -> Applied:
        shift = len(self.answers)
        return Applied(
            self.answers + other.answers,
            {**self.totals, **other.totals},
            self.mirror_pending + other.mirror_pending,
            self.repeats | {shift + p for p in other.repeats},
        )


@dataclass
class _Known:
    """What the batch's positions were answered with before."""

    works: dict[int, Answer] = field(default_factory=dict)  # batch index → first answer
    rejected: set[tuple[int, int]] = field(default_factory=set)


class BatchAttempt:
    """Tries a batch once against the stores it is handed (it owns none of them).

    ``redis_down``: Redis refused a write, so tries record their users as pending without
    trying Redis (no timeout per batch) until someone who saw Redis answer resets it.
    """

    def __init__(
        self,
        store: BatchStore,
        mirror: SessionMirror,
        *,
        clock: Callable[[], datetime],
        app_id: str = "",
        stage: Stage = no_stage,
    ) -> None:
        self._store = store
        self._mirror = mirror
        self._clock = clock
        self._app_id = app_id
        self._stage = stage
        self.redis_down = False

    async def apply_once(
        self,
        batch: Sequence[Work],
        *,
        rejected: Sequence[Rejected] = (),
        forced: Callable[[Work], Outcome] | None = None,
    ) -> Applied:
        """A single try; raises ``Unavailable`` if PostgreSQL is down: the batch is redone.
        Other store errors (``AnsweredElsewhere``, ``StatementRefused``) pass through.

        ``forced`` answers every new request without deciding or writing anything but the
        answer itself (used to record failures).
        """
        now = self._clock()
        mirror = MirrorPlan()
        try:
            with self._stage(POSTGRES_STAGE):
                async with self._store.transaction() as tx:
                    known = await self._answered_before(tx, batch, rejected)
                    results: dict[int, Answer] = dict(known.works)
                    repeats: set[int] = set()
                    fresh = [(p, work) for p, work in enumerate(batch) if p not in known.works]
                    new_rejections = [
                        r for r in rejected if (r.partition, r.offset) not in known.rejected
                    ]
                    if forced is not None:
                        for position, work in fresh:
                            results[position] = answer(forced(work))
                        await tx.insert_audit(
                            [
                                audit_row(work, "Failed", *results[position], now)
                                for position, work in fresh
                            ]
                        )
                    else:
                        index = {id(work): position for position, work in fresh}
                        for wave in waves([work for _, work in fresh]):
                            answers, wave_mirror, again = await self._apply_wave(tx, wave, now)
                            mirror = mirror.then(wave_mirror)
                            for work, done in zip(wave, answers, strict=True):
                                results[index[id(work)]] = done
                            repeats.update(index[id(work)] for work in again)
                    answered = [(work, results[position]) for position, work in fresh]
                    await tx.insert_processed_records(
                        processed_rows(self._app_id, answered, new_rejections, now=now)
                    )
                    totals = await self._count(tx, answered, new_rejections, now)
                    pending = await self._write_mirror(tx, mirror, now)
        except StoreUnavailable as exc:
            raise Unavailable(ErrorCode.DATABASE_UNAVAILABLE, str(exc)) from exc
        return Applied([results[p] for p in range(len(batch))], totals, pending, frozenset(repeats))

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
                # The very bytes published the first time, and the outcome they say.
                known.works[position] = Answer(parse_outcome_json(outcome), JsonText(outcome))
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

    async def _count(
        self,
        tx: BatchTransaction,
        answered: Sequence[tuple[Work, Answer]],
        rejected: Sequence[Rejected],
        now: datetime,
    ) -> dict[int, counters.Counters]:
        """Advance the counters of the batch's partitions by what was answered for the first
        time, in the same transaction: a counter never holds an answer PostgreSQL does not."""
        by_partition: dict[int, list[Outcome]] = defaultdict(list)
        latencies: dict[int, list[float | None]] = defaultdict(list)
        dead: dict[int, int] = defaultdict(int)
        now_ms = self._clock().timestamp() * 1000  # latency up to the answer, not the start
        for work, (outcome, _) in answered:
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

    async def _write_mirror(self, tx: BatchTransaction, plan: MirrorPlan, now: datetime) -> int:
        """Write Redis while the users' rows are locked; if Redis fails, mark them pending.

        Writing before the commit, under the batch's row locks, orders every Redis write of a
        user like its PostgreSQL changes (a repair takes the same locks). Should the commit
        then fail, the records are redone and write the same documents again.
        """
        repair_rows = await tx.session_documents(sorted(plan.to_repair))
        documents = dict(plan.documents)
        repaired = {row["user_id"]: document_from_row(row) for row in repair_rows}
        for user in plan.to_repair:
            documents.setdefault(user, repaired.get(user))
        if not documents:
            return 0
        if not self.redis_down:
            live = [doc for doc in documents.values() if doc is not None]
            keep = {doc["session_id"] for doc in live}
            try:
                with self._stage(REDIS_STAGE):
                    await self._mirror.write_sessions(
                        live,
                        stale_sessions=sorted(plan.stale_sessions - keep),
                        users_without_session=sorted(
                            u for u, doc in documents.items() if doc is None
                        ),
                    )
                return 0
            except MirrorUnavailable as exc:
                # Whatever Redis says (down, loading, read-only, out of memory), PostgreSQL
                # holds the truth: the mirror is owed, the request is not failed.
                log.warning(
                    "Redis refused the mirror of %d users (%s): marked pending",
                    len(documents),
                    exc,
                )
                self.redis_down = True
        await tx.mark_mirror_pending(sorted(documents), now)
        return len(documents)

    async def _apply_wave(
        self, tx: BatchTransaction, wave: Sequence[Work], now: datetime
    ) -> tuple[list[Answer], MirrorPlan, list[Work]]:
        """The wave's answers, its Redis plan and its failures reported before (``Applied``)."""
        started = time.perf_counter()
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
        effects = plan_effects(wave, decisions, now=now)
        await tx.insert_sessions(effects.sessions, effects.steps, effects.manifests)
        await tx.mark_legacy_migrated(effects.migrated_users, now)
        await tx.delete_sessions(effects.rolled_back_ids)
        restored = {**effects.restored, **await tx.restore_legacy_rows(effects.snapshots)}
        # A request's share of its wave: the wave's statements are set-based, so the time spent
        # on one request is not separable; its share is the honest per-request figure.
        elapsed_ms = (time.perf_counter() - started) * 1000 / len(wave)
        answers = [
            answer(
                build_outcome(
                    work,
                    decision,
                    now=now,
                    duration_ms=elapsed_ms,
                    restored=restored.get(work.request.user_id),
                )
            )
            for work, decision in zip(wave, decisions, strict=True)
        ]
        # Asked before this wave's own answers are recorded: what it finds was reported before.
        failing = [w for w, a in zip(wave, answers, strict=True) if fails_for_good(w, a.outcome)]
        known = (
            await tx.known_failures(sorted({w.request.user_id for w in failing}))
            if failing
            else set()
        )
        ledger_rows, audit_rows = answer_rows(wave, decisions, answers, now=now)
        await tx.insert_ledger(ledger_rows)
        await tx.insert_audit(audit_rows)
        return answers, effects.mirror, [w for w in failing if w.request.user_id in known]
