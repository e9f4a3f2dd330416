"""Which failed requests `migrator replay` publishes again: the latest per user, and how."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from schemas.events import FailedOutcome, MigratedOutcome, OutcomeError
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
    dry_run: bool = False,
) -> bytes:
    rid = request_id or uuid.uuid4()
    request = {
        "schema_version": 1,
        "request_id": str(rid),
        "user_id": user,
        "action": "migrate",
        "dry_run": dry_run,
        "attempt": attempt,
    }
    return (
        FailedOutcome(
            event_id=uuid.uuid4(),
            request_id=rid,
            user_id=user,
            action="migrate",
            dry_run=dry_run,
            error=OutcomeError(code=code, message="m", retryable=retryable),
            attempt=attempt,
            processed_at=at,
            request=request,
        )
        .model_dump_json()
        .encode()
    )


def migrated(user: str, *, at: datetime = T0, dry_run: bool = False) -> bytes:
    outcome = MigratedOutcome(
        event_id=uuid.uuid4(),
        request_id=uuid.uuid4(),
        user_id=user,
        action="migrate",
        dry_run=dry_run,
        processed_at=at,
    )
    return outcome.model_dump_json().encode()


def users(values: list[bytes], selection: ReplayFilter | None = None) -> list[str]:
    return sorted(r.user_id for r in plan_replay(values, selection or ReplayFilter()).requests)


def test_replays_carry_the_same_request_id_with_attempt_plus_one() -> None:
    rid = uuid.uuid4()
    [replay] = plan_replay([failed("u1", request_id=rid)], ReplayFilter()).requests
    assert replay.request_id == rid and replay.attempt == 2 and replay.user_id == "u1"


def test_filters() -> None:
    values = [
        failed("u1", at=T0.replace(hour=9)),
        failed("u2", "database_unavailable", retryable=True),
        failed("u3", "unknown_legacy_step", at=T0.replace(hour=11)),
    ]
    assert users(values) == ["u1", "u2", "u3"]
    assert users(values, ReplayFilter(since=T0)) == ["u2", "u3"]
    assert users(values, ReplayFilter(until=T0)) == ["u1"]
    assert users(values, ReplayFilter(codes=frozenset({"unknown_legacy_step"}))) == ["u3"]
    assert users(values, ReplayFilter(user_ids=frozenset({"u1", "u3"}))) == ["u1", "u3"]
    assert users(values, ReplayFilter(retryable_only=True)) == ["u2"]


def test_a_user_who_failed_three_times_is_replayed_once_from_the_latest_failure() -> None:
    first, latest = uuid.uuid4(), uuid.uuid4()
    values = [
        failed("u", request_id=first, at=T0.replace(hour=8)),
        failed("u", request_id=latest, at=T0.replace(hour=10), attempt=2),
        failed("u", request_id=first, at=T0.replace(hour=9), attempt=2),
        b"not json",
    ]
    [replay] = plan_replay(values, ReplayFilter()).requests
    assert (replay.request_id, replay.attempt) == (latest, 3)


def test_a_user_whose_later_request_succeeded_is_not_replayed() -> None:
    values = [
        failed("done", at=T0),
        migrated("done", at=T0.replace(hour=11)),
        migrated("again", at=T0.replace(hour=9)),
        failed("again", at=T0),
        failed("dry", at=T0),
        migrated("dry", at=T0.replace(hour=11), dry_run=True),  # a dry run changes nothing
    ]
    plan = plan_replay(values, ReplayFilter())
    assert sorted(r.user_id for r in plan.requests) == ["again", "dry"]
    assert plan.superseded == 1


def test_the_latest_failure_decides_whether_a_user_matches_the_filter() -> None:
    values = [
        failed("u", "database_unavailable", retryable=True, at=T0.replace(hour=9)),
        failed("u", "unknown_legacy_step", at=T0.replace(hour=10)),
    ]
    assert users(values, ReplayFilter(retryable_only=True)) == []


def test_the_plan_counts_by_code_and_warns_when_nothing_can_succeed_unchanged() -> None:
    plan = plan_replay(
        [
            failed("a", "unknown_legacy_step"),
            failed("b", "unknown_legacy_step"),
            failed("c", "invalid_legacy_data"),
            failed("d", dry_run=True),
        ],
        ReplayFilter(),
    )
    assert plan.by_code == {"unknown_legacy_step": 2, "invalid_legacy_data": 1}
    assert (plan.retryable, plan.dry_runs) == (0, 1)
    text = "\n".join(plan.summary())
    assert "unknown_legacy_step 2 (not retryable)" in text
    assert "WARNING" in text and "1 failed dry run" in text
    retryable = plan_replay([failed("e", "database_unavailable", retryable=True)], ReplayFilter())
    assert "WARNING" not in "\n".join(retryable.summary())
