"""What one request does, given the state locked for its user: pure, no I/O, no clock.

The batch applier loads state for a whole batch, asks ``decide`` about each request, then writes
all effects set-based. Keeping the rules here makes every branch a plain unit test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agents.core.planner import MigrationPlan, PlanError, plan_migration, session_id_for
from agents.core.state import LedgerEntry, StoredSession
from schemas.events import ErrorCode, MigrationRequest, Outcome, parse_outcome_json
from schemas.legacy import LegacyRow, LegacyStatus, UnreadableLegacyRow


@dataclass(frozen=True)
class Work:
    """One accepted request and where it came from (``None`` outside Kafka, e.g. in tests).

    ``digest`` identifies the record's bytes, so a position answered before is only replayed
    for the very same record.
    """

    request: MigrationRequest
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None
    digest: bytes = b""


@dataclass(frozen=True)
class Rejected:
    """A record dead-lettered at the edge: recorded and counted once, like an answered request."""

    partition: int
    offset: int
    digest: bytes


@dataclass(frozen=True)
class Replayed:
    """The very record whose effect was committed is here again: answer as the first time."""

    outcome: Outcome  # as first published, read from the ledger once


@dataclass(frozen=True)
class Duplicate:
    """Another record with a request_id that already succeeded: nothing to do, already done."""

    outcome: Outcome  # as first published, read from the ledger once


@dataclass(frozen=True)
class Migrate:
    plan: MigrationPlan


@dataclass(frozen=True)
class AlreadyMigrated:
    session: StoredSession


@dataclass(frozen=True)
class RollBack:
    session: StoredSession


@dataclass(frozen=True)
class Failed:
    code: ErrorCode
    message: str


Decision = Replayed | Duplicate | Migrate | AlreadyMigrated | RollBack | Failed


def decide(
    work: Work,
    *,
    legacy: LegacyRow | UnreadableLegacyRow | None,
    session: StoredSession | None,
    ledger: LedgerEntry | None,
    now: datetime,
) -> Decision:
    request = work.request
    if ledger is not None:
        return _from_ledger(work, ledger)
    if request.action == "rollback":
        if session is None:
            return Failed(ErrorCode.NOT_MIGRATED, f"user {request.user_id} has no migrated session")
        return RollBack(session)
    if session is not None:
        return AlreadyMigrated(session)
    if legacy is None:
        return Failed(ErrorCode.USER_NOT_FOUND, f"no legacy onboarding row for {request.user_id}")
    if isinstance(legacy, UnreadableLegacyRow):
        return Failed(
            ErrorCode.INVALID_LEGACY_DATA,
            f"legacy row of {request.user_id} cannot be read: {legacy.problem}",
        )
    if legacy.status == LegacyStatus.MIGRATED:
        return Failed(
            ErrorCode.INVALID_LEGACY_DATA,
            f"legacy row of {request.user_id} says 'migrated' but no session exists",
        )
    try:
        # A record's Kafka time is the same on every delivery; outside Kafka, the batch's clock.
        requested_ms = work.timestamp_ms
        if requested_ms is None:
            requested_ms = int(now.timestamp() * 1000)
        session_id = session_id_for(request.user_id, request.request_id, requested_ms)
        plan = plan_migration(legacy, session_id=session_id, now=now)
    except PlanError as error:
        return Failed(error.code, error.message)
    return Migrate(plan)


def _from_ledger(work: Work, ledger: LedgerEntry) -> Decision:
    request = work.request
    if ledger.user_id != request.user_id or ledger.action != request.action:
        return Failed(
            ErrorCode.REQUEST_ID_CONFLICT,
            f"request_id {request.request_id} was already used for "
            f"{ledger.action} of {ledger.user_id}",
        )
    same_record = (
        work.partition is not None
        and work.offset is not None
        and (ledger.source_partition, ledger.source_offset) == (work.partition, work.offset)
    )
    stored = parse_outcome_json(ledger.outcome)
    return Replayed(stored) if same_record else Duplicate(stored)


def waves(batch: Sequence[Work]) -> list[list[Work]]:
    """Split a batch so that no wave holds two requests of one user or one request_id.

    Each wave is applied set-based after the previous one, inside the same transaction, so the
    second request of a user sees the first one's effect: per-user order holds inside a batch.
    """
    result: list[list[Work]] = []
    by_user: dict[str, int] = {}
    by_request: dict[Any, int] = {}
    for work in batch:
        request = work.request
        index = max(by_user.get(request.user_id, -1), by_request.get(request.request_id, -1)) + 1
        by_user[request.user_id] = by_request[request.request_id] = index
        if index == len(result):
            result.append([])
        result[index].append(work)
    return result
