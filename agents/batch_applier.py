"""Applying a batch of requests: the failure policy around one try of it.

A try (``batch_transaction``) is one PostgreSQL transaction that also writes the Redis mirror;
this module decides what a failed try leads to, from the stores' own errors
(``agents.stores.errors``): redo, retry, wait, halve, or answer ``failed``.

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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from agents.batch_transaction import Applied, BatchAttempt, Stage, Unavailable, no_stage
from agents.core.decide import Rejected, Work
from agents.core.outcomes import failed_outcome
from agents.core.retry import RetryPolicy
from agents.stores.errors import AnsweredElsewhere, describe
from agents.stores.protocol import BatchStore, SessionMirror
from schemas.events import ErrorCode, Outcome

log = logging.getLogger(__name__)

# How often a batch is redone at once when another worker answered its records concurrently.
_CONFLICT_REDOS = 3
# How long to wait between two looks at a PostgreSQL that does not answer.
_OUTAGE_POLL_S = (0.2, 2.0)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _never() -> bool:
    return False


class BatchApplier:
    """The failure policy around one try of a batch (``batch_transaction.BatchAttempt``):
    redo, retry, wait out an outage, halve to isolate a refused record, give up.

    Owns nothing: the stores belong to the caller (a Faust service, a CLI, a unit test).
    ``app_id`` names the consumer group whose answers and counters it keeps: each app id
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
        stage: Stage = no_stage,
    ) -> None:
        """``stage``: spans around each try's PostgreSQL transaction and Redis mirror (the
        worker's tracing; none by default)."""
        self._store = store
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._attempt = BatchAttempt(store, mirror, clock=clock, app_id=app_id, stage=stage)
        # Set while a batch waits for PostgreSQL to come back; ``health`` shows it.
        self.waiting_for: str | None = None

    @property
    def redis_down(self) -> bool:
        """Redis refused a write: batches record their users as pending without trying Redis
        (no 5 s timeout per batch) until the repair loop finds Redis answering again."""
        return self._attempt.redis_down

    @redis_down.setter
    def redis_down(self, down: bool) -> None:
        self._attempt.redis_down = down

    async def apply_once(
        self,
        batch: Sequence[Work],
        *,
        rejected: Sequence[Rejected] = (),
        forced: Callable[[Work], Outcome] | None = None,
    ) -> Applied:
        """A single try, without the failure policy (``BatchAttempt.apply_once``)."""
        return await self._attempt.apply_once(batch, rejected=rejected, forced=forced)

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
            except AnsweredElsewhere:
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
                    outage = Unavailable(ErrorCode.DATABASE_UNAVAILABLE, describe(exc))
                    if not await self._wait_for_postgres(outage, abandoned):
                        return None
                    continue
                return await self._isolate(batch, rejected, abandoned)

    async def answer_failed(
        self,
        batch: Sequence[Work],
        code: ErrorCode,
        message: Callable[[Work], str],
        *,
        abandoned: Callable[[], bool] = _never,
    ) -> Applied | None:
        """Answer each request of ``batch`` ``failed`` with ``code`` without deciding it: no
        user is read or touched, only the answer is recorded (audit log, the record's answer,
        the counters), so a redelivery says the same and a replay can still carry it out (a
        cancelled run's requests). A request answered before keeps its first answer. ``None``
        only when ``abandoned()`` turned true while PostgreSQL was down."""
        if not batch:
            return Applied([])
        now = self._clock()

        def failure(work: Work) -> Outcome:
            return failed_outcome(work, code, message(work), now=now, duration_ms=0.0)

        for _ in range(_CONFLICT_REDOS):
            try:
                return await self._forced(batch, (), failure, abandoned)
            except AnsweredElsewhere:
                # Another worker answered some of them meanwhile: the redo replays its answers.
                log.info("batch of %d: answered concurrently elsewhere; redoing", len(batch))
        return await self._forced(batch, (), failure, abandoned)

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

        return await self._forced(batch, rejected, failure, abandoned)

    async def _forced(
        self,
        batch: Sequence[Work],
        rejected: Sequence[Rejected],
        forced: Callable[[Work], Outcome],
        abandoned: Callable[[], bool],
    ) -> Applied | None:
        """``forced`` answers, recorded like any answer; an outage is waited out."""
        while True:
            try:
                return await self.apply_once(batch, rejected=rejected, forced=forced)
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


__all__ = ["Applied", "BatchApplier", "Unavailable"]
