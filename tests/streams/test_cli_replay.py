"""Which failed outcomes `migrator replay` republishes, and how."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from schemas.events import Outcome, OutcomeError
from streams.cli.replay import ReplayFilter, plan_replay

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def failed(
    user: str,
    code: str = "user_not_found",
    *,
    retryable: bool = False,
    attempt: int = 1,
    at: datetime = T0,
    request_id: uuid.UUID | None = None,
) -> bytes:
    rid = request_id or uuid.uuid4()
    request = {
        "schema_version": 1,
        "request_id": str(rid),
        "user_id": user,
        "action": "migrate",
        "dry_run": False,
        "attempt": attempt,
    }
    return (
        Outcome(
            event_id=uuid.uuid4(),
            request_id=rid,
            user_id=user,
            action="migrate",
            outcome="failed",
            error=OutcomeError(code=code, message="m", retryable=retryable),
            attempt=attempt,
            processed_at=at,
            request=request,
        )
        .model_dump_json()
        .encode()
    )


def test_replays_carry_the_same_request_id_with_attempt_plus_one() -> None:
    rid = uuid.uuid4()
    [replay] = plan_replay([failed("u1", request_id=rid)], ReplayFilter())
    assert replay.request_id == rid and replay.attempt == 2 and replay.user_id == "u1"


def test_filters() -> None:
    values = [
        failed("u1", at=T0.replace(hour=9)),
        failed("u2", "database_unavailable", retryable=True),
        failed("u3", "unknown_legacy_step", at=T0.replace(hour=11)),
    ]
    users = lambda f: sorted(r.user_id for r in plan_replay(values, f))  # noqa: E731
    assert users(ReplayFilter()) == ["u1", "u2", "u3"]
    assert users(ReplayFilter(since=T0)) == ["u2", "u3"]
    assert users(ReplayFilter(until=T0)) == ["u1"]
    assert users(ReplayFilter(codes=frozenset({"unknown_legacy_step"}))) == ["u3"]
    assert users(ReplayFilter(user_ids=frozenset({"u1", "u3"}))) == ["u1", "u3"]
    assert users(ReplayFilter(retryable_only=True)) == ["u2"]


def test_the_latest_attempt_of_a_request_wins_and_non_failures_are_ignored() -> None:
    rid = uuid.uuid4()
    values = [
        failed("u", attempt=1, request_id=rid),
        failed("u", attempt=3, request_id=rid),
        failed("u", attempt=2, request_id=rid),
        b"not json",
    ]
    [replay] = plan_replay(values, ReplayFilter())
    assert replay.attempt == 4
