"""Run control's pure parts: cohorts, a run's figures, the control state, the failure budget,
the throttle's pace, and the re-validation tally."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from agents.core import control_state
from agents.core.checks import check_legacy_unchanged
from agents.core.cohorts import AnswerCount, bucket, cohort, in_percent, summarize, write_report
from agents.core.control_state import (
    ControlState,
    FailureBudget,
    FailureWindows,
    Pacer,
    RunCancel,
    batch_limit,
    cancel_key,
    judged,
    parse_budget,
    share,
)
from agents.core.decide import Work
from agents.core.outcomes import failed_outcome
from agents.core.revalidation_tally import DRIFT_CHECK, Tally, combine
from schemas.events import ErrorCode, FailedOutcome, MigrationRequest

USERS = [f"user-{n:07d}" for n in range(20_000)]
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_cohorts_are_stable_nested_and_the_size_asked() -> None:
    one, ten = cohort(USERS, 1), cohort(USERS, 10)
    assert set(one) <= set(ten) <= set(cohort(USERS, 100)) == set(USERS)
    assert 0.8 * 200 <= len(one) <= 1.2 * 200 and 0.9 * 2_000 <= len(ten) <= 1.1 * 2_000
    assert bucket("user-0000042") == bucket("user-0000042")  # no per-process salt
    assert in_percent("user-0000042", 100) and not in_percent("user-0000042", 0)
    # The same users whatever else is selected beside them: membership is per user.
    assert cohort(USERS[:5_000], 10) == [u for u in ten if u in set(USERS[:5_000])]


def _answers(*rows: tuple[str, str, str | None, int, int]) -> list[AnswerCount]:
    first = NOW - timedelta(seconds=100)
    return [AnswerCount(a, o, c, n, r, first, NOW) for a, o, c, n, r in rows]


RUN = {
    "run_id": "canary",
    "created_at": NOW - timedelta(minutes=5),
    "created_by": "ops",
    "migrate_requested": 100,
    "rollback_requested": 0,
    "selections": [{"kind": "percent", "percent": 1}],
}


def test_a_run_summary_counts_answers_by_kind_and_code_with_a_rate_and_an_eta() -> None:
    answers = _answers(
        ("migrate", "migrated", None, 50, 30),
        ("migrate", "failed", "invalid_legacy_data", 4, 0),
        ("migrate", "failed", "user_not_found", 1, 0),
    )
    run = summarize(RUN, answers, now=NOW)
    figures = run.as_dict()
    assert (figures["done"], figures["migrated"], figures["failed"]) == (55, 50, 5)
    assert figures["failed_by_code"] == {"invalid_legacy_data": 4, "user_not_found": 1}
    assert figures["state"] == "running" and figures["remaining"] == 45
    assert run.rate_per_s == pytest.approx(3.0)  # 30 answers in the last 10 s
    assert run.eta_s == pytest.approx(15)
    assert figures["duration_s"] == 100  # first answer to now


def test_a_finished_run_keeps_its_average_rate_and_duration_not_a_decaying_one() -> None:
    done = summarize(RUN, _answers(("migrate", "migrated", None, 100, 0)), now=NOW)
    later = summarize(
        RUN, _answers(("migrate", "migrated", None, 100, 0)), now=NOW + timedelta(minutes=3)
    )
    for run in (done, later):
        assert run.state == "finished" and run.elapsed_s == 100
        assert run.rate_per_s == pytest.approx(1.0)  # 100 answers in 100 s


def test_a_run_not_finished_shows_the_clusters_pause() -> None:
    from agents.core.cohorts import shown_state

    assert shown_state("running", paused=True, auto=True) == "auto-paused"
    assert shown_state("waiting", paused=True, auto=False) == "paused"
    assert shown_state("finished", paused=True, auto=True) == "finished"
    assert shown_state("running", paused=False, auto=False) == "running"


def test_a_run_is_finished_once_every_request_is_answered_and_waiting_before_any() -> None:
    assert summarize(RUN, [], now=NOW).state == "waiting"
    done = summarize(RUN, _answers(("migrate", "migrated", None, 100, 0)), now=NOW)
    assert done.state == "finished" and done.finished_at == NOW and done.eta_s is None
    rolled = summarize(
        {**RUN, "rollback_requested": 10},
        _answers(("migrate", "migrated", None, 100, 0), ("rollback", "rolled_back", None, 8, 0)),
        now=NOW,
    )
    assert rolled.state == "running" and rolled.rolled_back == 8


def test_a_report_is_csv_with_a_header_or_json() -> None:
    rows = [
        {
            "user_id": "u1",
            "action": "migrate",
            "error_code": "invalid_legacy_data",
            "retryable": False,
            "message": 'goals, "quoted"',
            "request_id": "r1",
            "at": NOW.isoformat(),
        }
    ]
    out = io.StringIO()
    write_report(rows, "csv", out)
    assert out.getvalue().splitlines()[0].startswith("user_id,action,error_code")
    assert '"goals, ""quoted"""' in out.getvalue()
    assert ",false," in out.getvalue().splitlines()[1]  # as JSON spells it, not Python's False
    out = io.StringIO()
    write_report(rows, "json", out)
    assert json.loads(out.getvalue()) == rows


def test_the_control_state_is_the_latest_record_per_key() -> None:
    state = ControlState()
    state = control_state.apply(state, "pause", {"paused": True, "reason": "why", "by": "ops"})
    assert state.paused and state.reason == "why" and not state.auto
    state = control_state.apply(state, "throttle", {"rate": 200, "by": "ops"})
    assert state.paused and state.rate == 200
    state = control_state.apply(state, "pause", {"paused": False, "by": "ops"})
    assert not state.paused and state.rate == 200
    assert control_state.apply(state, "throttle", {"rate": None}).rate is None
    assert control_state.apply(state, "throttle", {"rate": "fast"}).rate is None
    assert control_state.apply(state, "throttle", None).rate is None  # a tombstone clears it
    assert control_state.apply(state, "something-new", {"x": 1}) == state  # a later version's key


CANCEL = {"at": "2026-11-28T12:00:00.000+00:00", "by": "ops", "reason": "wrong wave"}


def test_a_cancel_answers_the_runs_records_already_in_the_topic_and_no_others() -> None:
    state = control_state.apply(
        ControlState(), cancel_key("wrong-wave"), {**CANCEL, "before": {"0": 10, "2": 5}}
    )
    cancel = state.cancelled("wrong-wave", 0, 9)
    assert cancel is not None and cancel.by == "ops" and cancel.reason == "wrong wave"
    assert "run wrong-wave was cancelled" in cancel.message() and "replay" in cancel.message()
    assert state.cancelled("wrong-wave", 2, 4) is cancel
    assert state.cancelled("wrong-wave", 0, 10) is None  # published after the cancel
    assert state.cancelled("wrong-wave", 1, 0) is None  # a partition the cancel saw empty
    assert state.cancelled("other-run", 0, 1) is None  # another run
    assert state.cancelled(None, 0, 1) is None  # no run
    assert state.cancelled("wrong-wave", None, None) is None  # not a Kafka record
    # The cancel neither pauses nor throttles anything, and is kept beside the other keys.
    paused = control_state.apply(state, "pause", {"paused": True, "by": "ops"})
    assert paused.paused and paused.cancelled("wrong-wave", 0, 9) == cancel
    assert not state.paused and state.rate is None


def test_the_latest_cancel_record_of_a_run_is_its_state() -> None:
    key = cancel_key("wave")
    first = control_state.apply(ControlState(), key, {**CANCEL, "before": {"0": 10}})
    # Cancelled again later: the new boundary holds (it also takes what came since).
    again = control_state.apply(first, key, {**CANCEL, "before": {"0": 25}})
    assert again.cancelled("wave", 0, 20) is not None and len(again.cancels) == 1
    # Another run's cancel is kept apart.
    both = control_state.apply(again, cancel_key("other"), {**CANCEL, "before": {"0": 3}})
    assert set(both.cancels) == {"wave", "other"}
    # A tombstone, or a value without its time or offsets, leaves the run not cancelled (the
    # latest record per key is all compaction keeps).
    for value in (
        None,
        {"by": "ops", "before": {"0": 10}},
        {**CANCEL},
        {**CANCEL, "before": {"zero": 10}},
        {**CANCEL, "before": {"0": -1}},
        {**CANCEL, "before": {"0": True}},
        {**CANCEL, "before": [10]},
    ):
        assert "wave" not in control_state.apply(both, key, value).cancels, value
    assert set(control_state.apply(both, key, None).cancels) == {"other"}


def test_a_cancel_record_reads_back_as_it_was_written() -> None:
    cancel = RunCancel("wave", CANCEL["at"], "ops", "why", {3: 7, 0: 12})
    value = json.loads(json.dumps(cancel.value()))  # as it travels on the topic
    assert value["before"] == {"0": 12, "3": 7}
    assert control_state.apply(ControlState(), cancel_key("wave"), value).cancels == {
        "wave": cancel
    }


def test_a_cancelled_run_says_so_with_when_and_by_whom_whatever_its_figures() -> None:
    cancel = RunCancel("canary", CANCEL["at"], "ops", "wrong wave", {0: 100})
    waiting = summarize(RUN, [], now=NOW, cancel=cancel)
    assert waiting.state == "cancelled"
    figures = waiting.as_dict()
    assert (figures["cancelled_at"], figures["cancelled_by"]) == (CANCEL["at"], "ops")
    assert figures["cancel_reason"] == "wrong wave" and figures["remaining"] == 100
    answered = _answers(
        ("migrate", "migrated", None, 10, 0), ("migrate", "failed", "cancelled", 90, 0)
    )
    done = summarize(RUN, answered, now=NOW, cancel=cancel)
    assert done.state == "cancelled" and done.failed_by_code == {"cancelled": 90}
    assert done.finished_at == NOW  # every request answered, by the cancel for most
    plain = summarize(RUN, [], now=NOW).as_dict()
    assert plain["cancelled_at"] is None and plain["cancelled_by"] is None


def test_the_failure_budget_does_not_judge_a_cancelled_runs_answers() -> None:
    def failed(code: ErrorCode) -> FailedOutcome:
        request = MigrationRequest(request_id=uuid.uuid4(), user_id="u1", run_id="wave")
        return failed_outcome(Work(request, 0, 1), code, "x", now=NOW, duration_ms=0)

    cancelled = [failed(ErrorCode.CANCELLED) for _ in range(600)]
    broken = failed(ErrorCode.INVALID_LEGACY_DATA)
    assert judged([*cancelled, broken]) == [broken]
    windows = FailureWindows(FailureBudget(5, 100))
    pairs = [(o.run_id, o.outcome == "failed") for o in judged(cancelled)]
    assert windows.observe(pairs) is None


def test_the_failure_budget_is_parsed_or_refused() -> None:
    assert parse_budget("5%/500") == FailureBudget(5.0, 500)
    assert parse_budget(" 2.5 % / 1000 ") == FailureBudget(2.5, 1000)
    assert parse_budget("off") is None
    for bad in ("5/500", "5%", "150%/500", "5%/3", "x"):
        with pytest.raises(ValueError):
            parse_budget(bad)


def test_the_failure_budget_trips_on_more_than_its_share_of_a_full_window() -> None:
    windows = FailureWindows(FailureBudget(5, 100))  # more than 5 failures in the last 100
    assert windows.observe([(None, True)] * 5) is None  # 5 is not more than 5
    reason = windows.observe([(None, True)])
    assert reason is not None and "overall" in reason and "6 of the last 6" in reason
    windows.reset()
    # Failures spread thinner than the budget never trip, however many outcomes pass.
    for _ in range(50):
        assert windows.observe([(None, True)] + [(None, False)] * 20) is None


def test_the_failure_budget_judges_each_run_too() -> None:
    """A run's failures spread among many successes of other work slide out of the overall
    window, but stay in the run's own window."""
    windows = FailureWindows(FailureBudget(5, 100))
    for _ in range(5):
        assert windows.observe([("bad-wave", True)] + [(None, False)] * 150) is None
    reason = windows.observe([("bad-wave", True)])
    assert reason is not None and "in run bad-wave" in reason, reason


def test_the_pacer_spaces_batches_to_the_rate_and_grants_no_burst_after_idling() -> None:
    pacer = Pacer()
    assert pacer.wait_s(50, 100.0, now=10.0) == 0.0
    assert pacer.wait_s(50, 100.0, now=10.0) == pytest.approx(0.5)
    assert pacer.wait_s(50, 100.0, now=10.2) == pytest.approx(0.8)
    assert pacer.wait_s(50, 100.0, now=100.0) == 0.0  # idle: starts afresh, no saved credit
    assert pacer.wait_s(50, 100.0, now=100.0) == pytest.approx(0.5)
    assert pacer.wait_s(500, None, now=100.0) == 0.0  # no throttle


def test_each_worker_takes_its_share_of_the_throttle_in_small_batches() -> None:
    assert share(300.0, 2, 4) == 150.0 and share(None, 2, 4) is None and share(300, 0, 4) == 0
    assert batch_limit(500, None) == 500
    assert batch_limit(500, 150.0) == 37 and batch_limit(500, 1.0) == 1


def test_drift_is_any_legacy_write_after_the_snapshot() -> None:
    snapshot = {
        "workspace_id": "w",
        "status": "in_progress",
        "current_step": "goals",
        "completed_steps": ["welcome"],
        "answers": {"a": 1},
    }
    legacy = {**snapshot, "status": "migrated", "updated_at": NOW}
    assert check_legacy_unchanged(legacy=legacy, snapshot=snapshot, migrated_at=NOW).ok
    edited = check_legacy_unchanged(
        legacy={**legacy, "answers": {"a": 2}}, snapshot=snapshot, migrated_at=NOW
    )
    assert not edited.ok and "answers" in edited.detail
    touched = check_legacy_unchanged(
        legacy={**legacy, "updated_at": NOW + timedelta(seconds=1)},
        snapshot=snapshot,
        migrated_at=NOW,
    )
    assert not touched.ok and "after the migration" in touched.detail
    assert not check_legacy_unchanged(legacy=None, snapshot=snapshot, migrated_at=NOW).ok


def test_the_revalidation_tally_counts_by_check_and_combines_workers() -> None:
    first, second = Tally(), Tally()
    first.record("u1", [("session_in_redis", "pointer=None")], recent=True, at="2026-11-28T12:00")
    first.record("u2", [], recent=False, at="2026-11-28T12:01")
    second.record("u3", [(DRIFT_CHECK, "changed: answers")], recent=True, at="2026-11-28T12:02")
    second.record("u1", [("session_in_redis", "pointer=None")], recent=False, at="2026-11-28T12:03")
    merged = combine([first.as_dict(), second.as_dict()])
    assert merged["sampled"] == 4 and merged["sampled_recent"] == 2
    assert merged["mismatches"] == {DRIFT_CHECK: 1, "session_in_redis": 2}
    assert merged["latest_user_ids"]["session_in_redis"] == ["u1"]
    assert merged["drift"] == [
        {"user_id": "u3", "detail": "changed: answers", "at": "2026-11-28T12:02"}
    ]
    assert merged["last_at"] == "2026-11-28T12:03"
