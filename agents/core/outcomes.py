"""Outcome events (contract §3) from decisions: pure, so each field's source is testable alone.

Event ids are uuid5 of the request and the Kafka position of the record that carried it, so a
redelivered record yields the same event id and a consumer can deduplicate even without EOS.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from agents.core.catalog import STEPS_TOTAL
from agents.core.decide import (
    AlreadyMigrated,
    Decision,
    Duplicate,
    Migrate,
    Replayed,
    RollBack,
    Work,
)
from agents.core.manifest import MANIFEST_VERSION
from agents.core.name_uuids import name_uuid
from agents.core.state import StoredSession
from schemas.events import (
    SCHEMA_VERSION,
    BcmRef,
    ErrorCode,
    FailedOutcome,
    MigratedOutcome,
    Outcome,
    OutcomeError,
    RolledBackOutcome,
    is_retryable,
)
from schemas.legacy import LegacyRow

_EVENT_NAMESPACE = uuid.UUID("6f1d7a52-3c1e-4c57-9f0e-5b0d3f3f7a11")


def event_id(work: Work) -> uuid.UUID:
    request = work.request
    position = f"{work.partition}:{work.offset}" if work.offset is not None else "direct"
    return name_uuid(_EVENT_NAMESPACE, f"{request.request_id}/{request.attempt}/{position}")


def build_outcome(
    work: Work,
    decision: Decision,
    *,
    now: datetime,
    duration_ms: float,
    restored: LegacyRow | None = None,
) -> Outcome:
    """The one outcome event for ``work``. ``restored`` is the legacy row after a rollback."""
    if isinstance(decision, Replayed):
        return decision.outcome
    base = _base(work, now=now, duration_ms=duration_ms)
    if isinstance(decision, Duplicate):
        return decision.outcome.model_copy(
            update={**base, "already_done": True, "dry_run": work.request.dry_run}
        )
    if isinstance(decision, Migrate):
        plan = decision.plan
        bcm = None
        if plan.manifest is not None and plan.manifest_checksum and plan.token_estimate is not None:
            bcm = BcmRef(
                version=MANIFEST_VERSION,
                checksum=plan.manifest_checksum,
                token_estimate=plan.token_estimate,
            )
        return MigratedOutcome(
            **base,
            already_done=False,
            session_id=plan.session_id,
            session_status=plan.status,
            completion_percentage=plan.completion_percentage,
            steps_completed=plan.steps_completed,
            bcm=bcm,
            legacy_snapshot_sha256=plan.legacy_sha256,
        )
    if isinstance(decision, AlreadyMigrated):
        return MigratedOutcome(
            **base,
            already_done=True,
            **_session_fields(decision.session),
            legacy_snapshot_sha256=decision.session.legacy_sha256,
        )
    if isinstance(decision, RollBack):
        if restored is None:
            raise ValueError("a rollback outcome needs the restored legacy row")
        restored_sha = restored.snapshot_sha256()
        return RolledBackOutcome(
            **base,
            already_done=False,
            session_id=decision.session.session_id,
            restored_legacy_sha256=restored_sha,
            matches_snapshot=restored_sha == decision.session.legacy_sha256,
        )
    return failed_outcome(work, decision.code, decision.message, now=now, duration_ms=duration_ms)


def failed_outcome(
    work: Work, code: ErrorCode, message: str, *, now: datetime, duration_ms: float
) -> FailedOutcome:
    return FailedOutcome(
        **_base(work, now=now, duration_ms=duration_ms),
        already_done=False,
        error=OutcomeError(code=code, message=message, retryable=is_retryable(code)),
        request=work.request.model_dump(mode="json"),
    )


def _base(work: Work, *, now: datetime, duration_ms: float) -> dict[str, Any]:
    request = work.request
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id(work),
        "request_id": request.request_id,
        "user_id": request.user_id,
        "action": request.action,
        "dry_run": request.dry_run,
        "attempt": request.attempt,
        "run_id": request.run_id,
        "duration_ms": round(duration_ms, 3),
        "processed_at": now,
        "steps_total": STEPS_TOTAL,
    }


def _session_fields(session: StoredSession) -> dict[str, Any]:
    bcm = None
    if (
        session.bcm_version is not None
        and session.bcm_checksum is not None
        and session.bcm_token_estimate is not None
    ):
        bcm = BcmRef(
            version=session.bcm_version,
            checksum=session.bcm_checksum,
            token_estimate=session.bcm_token_estimate,
        )
    return {
        "session_id": session.session_id,
        "session_status": session.status,
        "completion_percentage": session.completion_percentage,
        "steps_completed": session.steps_completed,
        "bcm": bcm,
    }
