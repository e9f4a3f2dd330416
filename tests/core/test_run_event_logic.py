"""Run events' pure part: which event a control record or a run's figures make, their ids (the
same whoever derives them), the auto-pause's figures, and a hook's environment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.core import control_state, run_events
from agents.core.cohorts import AnswerCount, summarize
from agents.core.control_state import FailureBudget, FailureWindows
from schemas.run_events import HOOK_NAMES, RunEvent

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
AT = NOW.isoformat()


def _run(requested: int, answered: int, *, first: datetime, last: datetime) -> object:
    row = {
        "run_id": "wave-1",
        "created_at": first - timedelta(seconds=5),
        "created_by": "ops@host",
        "migrate_requested": requested,
        "rollback_requested": 0,
    }
    answers = [AnswerCount("migrate", "migrated", None, answered, 0, first, last)]
    return summarize(row, answers, now=last)


def test_each_control_record_makes_one_event_named_by_its_offset() -> None:
    def event(key: str, value: dict[str, object] | None) -> RunEvent | None:
        return run_events.from_control(7, key, value, in_progress=["b", "a"], fallback_at=NOW)

    paused = event("pause", {"paused": True, "reason": "looking", "by": "ops", "at": AT})
    assert paused is not None and paused.event == "paused" and paused.event_id == "control-7"
    assert (paused.by, paused.reason, paused.runs) == ("ops", "looking", ["a", "b"])
    figures = {"kind": "failure_budget", "failed": 26, "outcomes": 500, "budget": "5%/500"}
    auto = event("pause", {"paused": True, "auto": True, "by": "auto: h:1", "figures": figures})
    assert auto is not None and auto.event == "auto_paused" and auto.auto_pause == figures
    assert auto.at == NOW  # no `at` in the value: the record's timestamp
    resumed = event("pause", {"paused": False, "by": "ops", "at": AT})
    assert resumed is not None and resumed.event == "resumed"
    throttled = event("throttle", {"rate": 500, "by": "ops", "at": AT})
    assert throttled is not None and throttled.throttle_per_s == 500.0
    lifted = event("throttle", {"rate": None, "by": "ops", "at": AT})
    assert lifted is not None and lifted.event == "throttled" and lifted.throttle_per_s is None
    cancelled = event(control_state.cancel_key("wave-2"), {"run_id": "wave-2", "by": "ops"})
    assert cancelled is not None and cancelled.run_id == "wave-2" and cancelled.runs == ["wave-2"]
    assert event("pause", None) is None  # a tombstone
    assert event("something-later", {"x": 1}) is None


def test_a_run_makes_started_then_finished_once_per_request_count() -> None:
    first, last = NOW, NOW + timedelta(seconds=30)
    running = _run(10, 4, first=first, last=last)
    done = _run(10, 10, first=first, last=last)
    since = NOW - timedelta(hours=1)
    made = run_events.from_runs([running], since=since, known=set())  # type: ignore[list-item]
    assert [e.event_id for e in made] == ["started:wave-1"]
    made = run_events.from_runs([done], since=since, known={"started:wave-1"})  # type: ignore[list-item]
    assert [e.event_id for e in made] == ["finished:wave-1:10"]
    assert made[0].figures is not None and made[0].figures["migrated"] == 10
    assert made[0].at == last
    # Already made: nothing again, whoever derives it.
    known = {"started:wave-1", "finished:wave-1:10"}
    assert run_events.from_runs([done], since=since, known=known) == []  # type: ignore[list-item]
    # Enqueued into again and finished again: a new event.
    again = _run(15, 15, first=first, last=last + timedelta(seconds=10))
    made = run_events.from_runs([again], since=since, known=known)  # type: ignore[list-item]
    assert [e.event_id for e in made] == ["finished:wave-1:15"]
    # Before run events were on: no history replayed.
    assert run_events.from_runs([done], since=last + timedelta(1), known=set()) == []  # type: ignore[list-item]


def test_the_failure_budget_says_its_figures_and_how_much_is_used() -> None:
    windows = FailureWindows(FailureBudget(10, 100))  # 10 failures allowed
    assert windows.observe([("r", True)] * 9) is None
    assert windows.used() == 0.9 and windows.tripped is None
    assert windows.observe([("r", True)] * 2) is not None
    assert windows.tripped == {
        "kind": "failure_budget",
        "budget": "10%/100",
        "run_id": None,
        "failed": 11,
        "outcomes": 11,
        "allowed": 10,
    }
    windows.reset()
    assert windows.used() == 0 and windows.tripped is None


def test_a_hook_gets_the_event_in_its_environment() -> None:
    event = run_events.verified(
        "wave-1", "v-9", at=NOW, by="ops", report={"checked": 3, "findings": 0}
    )
    env = run_events.hook_environment(event, app_id="app")
    assert env["MIGRATOR_EVENT"] == "verified" and env["MIGRATOR_HOOK"] == "on-run-verified"
    assert env["MIGRATOR_EVENT_ID"] == "verified:wave-1:v-9" and env["MIGRATOR_RUN_ID"] == "wave-1"
    assert env["MIGRATOR_REASON"] == "" and all(isinstance(v, str) for v in env.values())
    assert HOOK_NAMES["auto_paused"] == "on-auto-pause"
    assert set(HOOK_NAMES) == set(RunEvent.model_fields["event"].annotation.__args__)  # type: ignore[union-attr]


def test_control_events_keep_the_topic_s_order_and_run_events_fall_in_by_time() -> None:
    def control(offset: int, minute: int) -> RunEvent:
        at = (NOW + timedelta(minutes=minute)).isoformat()
        made = run_events.from_control(
            offset, "pause", {"paused": offset % 2 == 0, "at": at}, in_progress=[], fallback_at=NOW
        )
        assert made is not None
        return made

    def started(run: str, minute: int) -> RunEvent:
        at = NOW + timedelta(minutes=minute)
        return RunEvent(event_id=f"started:{run}", event="started", run_id=run, at=at)

    # Offset 2's writer's clock is behind offset 1's: still published after it.
    order = run_events.merged(
        [control(1, 5), control(2, 3)], [started("late", 9), started("early", 1)]
    )
    assert [e.event_id for e in order] == [
        "started:early",
        "control-1",
        "control-2",
        "started:late",
    ]
