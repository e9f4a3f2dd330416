"""What ``migrator runs cancel`` says, before and after it writes: the pure part (the command on
real servers is in ``tests/integration/test_cli_on_servers.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.core import control_state
from agents.core.cohorts import AnswerCount, summarize
from agents.core.control_state import ControlState, RunCancel, cancel_key
from streams.cli.run_cancel import done_lines, nothing_left, plan_lines

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
RUN = {
    "run_id": "wave-2",
    "created_at": NOW - timedelta(minutes=5),
    "created_by": "ops",
    "migrate_requested": 59_305,
    "rollback_requested": 0,
}


def answered(count: int) -> list[AnswerCount]:
    return [AnswerCount("migrate", "migrated", None, count, 0, NOW, NOW)]


def test_the_plan_says_how_many_requests_are_left_and_what_a_cancel_does() -> None:
    run = summarize(RUN, answered(305), now=NOW)
    lines = plan_lines(run, ControlState(), backlog=59_123)
    text = "\n".join(lines)
    assert lines[0].startswith("run wave-2: running, created")
    assert "unanswered  59000: to be answered cancelled" in text
    assert "backlog     59123 request record(s) of every run" in text
    assert "touching no user" in text and "replay --code cancelled" in text
    assert "already cancelled" not in text and "cluster" not in text
    assert nothing_left(run) is None
    assert "backlog" not in "\n".join(plan_lines(run, ControlState(), backlog=None))


def test_the_plan_names_a_pause_and_an_earlier_cancel() -> None:
    state = control_state.apply(ControlState(), "pause", {"paused": True, "by": "ops"})
    state = control_state.apply(
        state, cancel_key("wave-2"), {"at": "2026-11-28T11:00:00Z", "by": "ann", "before": {}}
    )
    run = summarize(RUN, [], now=NOW, cancel=state.cancels["wave-2"])
    text = "\n".join(plan_lines(run, state, backlog=0))
    assert "run wave-2: cancelled" in text
    assert "already cancelled at 2026-11-28T11:00:00Z by ann" in text
    assert "cluster     paused since" in text


def test_a_run_whose_requests_are_all_answered_has_nothing_left_to_cancel() -> None:
    done = summarize(RUN, answered(59_305), now=NOW)
    assert done.state == "finished"
    line = nothing_left(done)
    assert line is not None and "nothing left to cancel" in line and "59305" in line


def test_after_the_write_it_says_whether_the_workers_answer_now_or_after_a_resume() -> None:
    value = RunCancel("wave-2", "2026-11-28T12:00:00Z", "ops", None, {0: 4}).value()
    running = "\n".join(done_lines("wave-2", value, ControlState(), "onboarding-migrator"))
    assert "run wave-2 cancelled at 2026-11-28T12:00:00Z by ops" in running
    assert "onboarding-migrator-control, key cancel:wave-2" in running
    assert "resume" not in running and "migrator runs show wave-2" in running
    paused = control_state.apply(ControlState(), "pause", {"paused": True, "by": "ops"})
    waiting = "\n".join(done_lines("wave-2", value, paused, "onboarding-migrator"))
    assert "answered once it resumes (`migrator control resume`)" in waiting
