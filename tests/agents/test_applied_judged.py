"""What a batch hands the failure budget: every answer but its repeated failures and the answers
of a cancelled run, whichever part of the batch they come from."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from agents.batch_transaction import Applied
from agents.core.decide import Work
from agents.core.outcomes import failed_outcome
from schemas.events import ErrorCode, FailedOutcome, MigrationRequest

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _failed(user: str, code: ErrorCode) -> FailedOutcome:
    request = MigrationRequest(request_id=uuid.uuid4(), user_id=user, run_id="wave")
    return failed_outcome(Work(request, 0, 1), code, "x", now=NOW, duration_ms=0)


def test_repeats_and_cancelled_answers_are_left_out_across_added_parts() -> None:
    repeated = _failed("u1", ErrorCode.INVALID_LEGACY_DATA)
    fresh = _failed("u2", ErrorCode.INVALID_LEGACY_DATA)
    cancelled = _failed("u3", ErrorCode.CANCELLED)
    later = _failed("u4", ErrorCode.USER_NOT_FOUND)
    first = Applied.of([repeated, fresh], {})
    first.repeats = frozenset({0})
    second = Applied.of([cancelled, later, repeated], {})
    second.repeats = frozenset({2})

    both = first + second

    assert [o.user_id for o in both.outcomes] == ["u1", "u2", "u3", "u4", "u1"]
    assert [o.user_id for o in both.judged] == ["u2", "u4"]
