"""Legacy row in, migration plan out (contract §6). Pure: no I/O, no clock, no random ids.

``now`` and the session id are passed in. The session id is derived from the request and the
time its record was written to Kafka (a name-based id ordered by that time), so a redelivered
record plans exactly the same session as its first delivery did.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from agents.core.catalog import LEGACY_STEPS, STEPS, STEPS_TOTAL
from agents.core.manifest import (
    InvalidAnswers,
    build_manifest,
    check_answers,
    encoded_with_checksum_and_tokens,
)
from agents.core.name_uuids import time_ordered_name_uuid
from schemas.canonical import canonical_json
from schemas.events import ErrorCode, SessionStatusName
from schemas.legacy import LegacyRow, LegacyStatus
from schemas.rows import JsonText
from schemas.session import SessionStep, StepStatus

_SESSION_NAMESPACE = uuid.UUID("0b7f3c1e-58a4-4f0e-9d63-6c1f2a9e4b21")
_PLANNABLE = frozenset({LegacyStatus.NOT_STARTED, LegacyStatus.IN_PROGRESS, LegacyStatus.COMPLETED})
# A step's status in one letter: a session's 24 statuses travel to PostgreSQL as one short text
# (``sql/queries/insert_steps.sql`` spells them out again).
STEP_CODES = {StepStatus.COMPLETED: "c", StepStatus.SKIPPED: "s", StepStatus.PENDING: "p"}


class PlanError(Exception):
    """The legacy row cannot be migrated; ``code`` is the outcome's error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """``step_statuses`` (one per catalog step) and ``completed_at`` are the steps: the step
    rows are expanded from them where they are written (PostgreSQL builds the 24 rows of a
    session from its one-letter ``step_codes``), and ``steps`` spells them out for readers.

    Slots: a frozen dataclass sets each field through ``object.__setattr__``, which for these
    twenty fields cost 4.8 µs a migrated user without slots and 1.9 µs with them."""

    user_id: str
    session_id: uuid.UUID
    workspace_id: str | None
    status: SessionStatusName
    current_step: int | None
    completion_percentage: float
    steps_completed: int
    steps_total: int
    step_statuses: tuple[StepStatus, ...]
    step_codes: str
    completed_at: datetime
    manifest: dict[str, Any] | None
    manifest_checksum: str | None
    token_estimate: int | None
    legacy_snapshot: dict[str, Any]
    legacy_sha256: str
    now: datetime
    # The canonical JSON the checksums were computed over, handed to PostgreSQL as it is
    # (``JsonText``) rather than encoded again: about 2 µs each of a migrated user's CPU.
    manifest_json: JsonText | None
    legacy_snapshot_json: JsonText

    @property
    def steps(self) -> tuple[SessionStep, ...]:
        return tuple(
            SessionStep(
                step.number,
                step.key,
                status,
                step.required,
                self.completed_at if status is StepStatus.COMPLETED else None,
            )
            for step, status in zip(STEPS, self.step_statuses, strict=True)
        )


def session_id_for(user_id: str, request_id: uuid.UUID, requested_ms: int) -> uuid.UUID:
    """``requested_ms``: when the request's record was written (Unix milliseconds), so that
    sessions' ids, the key of their step rows, grow with time (see ``name_uuids``)."""
    return time_ordered_name_uuid(_SESSION_NAMESPACE, f"{user_id}/{request_id}", requested_ms)


@dataclass(frozen=True)
class _Shape:
    """What a session's steps look like for one set of completed legacy steps."""

    statuses: tuple[StepStatus, ...]
    codes: str  # one letter per step, see ``STEP_CODES``
    completed: int
    session_status: SessionStatusName
    current_step: int | None


@cache
def _shape(done: frozenset[str], legacy_completed: bool) -> _Shape:
    """Step statuses and the figures that follow from them: the same for every user with the
    same completed legacy steps, so computed once per combination (at most 2¹² × 2)."""
    statuses = tuple(
        StepStatus.COMPLETED
        if step.legacy_step in done or (legacy_completed and step.required)
        else StepStatus.SKIPPED
        if legacy_completed
        else StepStatus.PENDING
        for step in STEPS
    )
    completed = statuses.count(StepStatus.COMPLETED)
    required_done = all(
        status is StepStatus.COMPLETED
        for step, status in zip(STEPS, statuses, strict=True)
        if step.required
    )
    pending = [
        step.number
        for step, status in zip(STEPS, statuses, strict=True)
        if status is StepStatus.PENDING
    ]
    session_status: SessionStatusName = (
        "completed" if required_done else "in_progress" if completed else "not_started"
    )
    return _Shape(
        statuses,
        "".join(STEP_CODES[status] for status in statuses),
        completed,
        session_status,
        min(pending) if pending else None,
    )


def plan_migration(row: LegacyRow, *, session_id: uuid.UUID, now: datetime) -> MigrationPlan:
    unknown = sorted(set(row.completed_steps) - LEGACY_STEPS)
    if unknown:
        raise PlanError(
            ErrorCode.UNKNOWN_LEGACY_STEP,
            f"completed_steps holds names that are not legacy steps: {', '.join(unknown)}",
        )
    if row.status not in _PLANNABLE:
        raise PlanError(
            ErrorCode.INVALID_LEGACY_DATA, f"legacy status {row.status!r} cannot be migrated"
        )
    try:
        answers = check_answers(row)
    except InvalidAnswers as exc:
        raise PlanError(ErrorCode.INVALID_LEGACY_DATA, str(exc)) from None
    shape = _shape(frozenset(row.completed_steps), row.status == LegacyStatus.COMPLETED)
    session_status = shape.session_status
    completed = shape.completed
    manifest = manifest_json = checksum = tokens = None
    if session_status == "completed":
        manifest = build_manifest(row, answers)
        manifest_json, checksum, tokens = encoded_with_checksum_and_tokens(manifest)
    snapshot = row.snapshot()
    snapshot_json = canonical_json(snapshot)
    return MigrationPlan(
        user_id=row.user_id,
        session_id=session_id,
        workspace_id=row.workspace_id,
        status=session_status,
        current_step=shape.current_step,
        completion_percentage=round(100 * completed / STEPS_TOTAL, 2),
        steps_completed=completed,
        steps_total=STEPS_TOTAL,
        step_statuses=shape.statuses,
        step_codes=shape.codes,
        completed_at=row.updated_at,
        manifest=manifest,
        manifest_checksum=checksum,
        token_estimate=tokens,
        legacy_snapshot=snapshot,
        legacy_sha256=hashlib.sha256(snapshot_json).hexdigest(),
        now=now,
        manifest_json=manifest_json,
        legacy_snapshot_json=JsonText(snapshot_json),
    )
