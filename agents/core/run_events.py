"""Run events, the pure part: which events a control record or a run's figures make, their ids,
and the environment a hook is given. No clock, no I/O: the caller passes the records, the runs
and what was published already.

An event's id comes from its cause, so deriving the events twice (another worker, a restart)
gives the same ids, and the outbox (``agents.stores.run_events``) keeps one of each:

- ``control-<offset>``: a pause, resume, throttle or cancel record of the control topic (one
  record, one event, whoever reads it);
- ``started:<run>``: the run's first answer;
- ``finished:<run>:<requested>``: every request of the run answered; a run enqueued into again
  finishes again, with more requests, and that is a new event;
- ``verified:<run>:<verification>``: a ``migrator verify --run`` that ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from agents.core import control_state
from agents.core.cohorts import RunSummary
from schemas.run_events import RunEvent


def control_event_id(offset: int) -> str:
    return f"control-{offset}"


def from_control(
    offset: int,
    key: str,
    value: Mapping[str, Any] | None,
    *,
    in_progress: Sequence[str],
    fallback_at: datetime,
) -> RunEvent | None:
    """The event a control record makes (None for a tombstone or a key of a later version).

    ``in_progress``: the runs not finished when it was read, the ones a pause or throttle
    holds; ``fallback_at``: the record's Kafka timestamp, for a value without ``at``."""
    if value is None:
        return None
    at = _time(value.get("at"), fallback_at)
    by, reason = _text(value.get("by")), _text(value.get("reason"))
    runs = sorted(in_progress)
    event_id = control_event_id(offset)
    if key == control_state.PAUSE:
        if not value.get("paused"):
            return RunEvent(
                event_id=event_id, event="resumed", runs=runs, at=at, by=by, reason=reason
            )
        auto = bool(value.get("auto"))
        figures = value.get("figures")
        return RunEvent(
            event_id=event_id,
            event="auto_paused" if auto else "paused",
            runs=runs,
            at=at,
            by=by,
            reason=reason,
            auto=auto,
            auto_pause=dict(figures) if auto and isinstance(figures, Mapping) else None,
        )
    if key == control_state.THROTTLE:
        rate = value.get("rate")
        valid = isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0
        return RunEvent(
            event_id=event_id,
            event="throttled",
            runs=runs,
            at=at,
            by=by,
            throttle_per_s=float(rate) if valid else None,  # type: ignore[arg-type]
        )
    if key.startswith(control_state.CANCEL_PREFIX):
        run_id = key[len(control_state.CANCEL_PREFIX) :]
        if not run_id:
            return None
        return RunEvent(
            event_id=event_id,
            event="cancelled",
            run_id=run_id,
            runs=[run_id],
            at=at,
            by=by,
            reason=reason,
        )
    return None


def from_runs(
    summaries: Iterable[RunSummary], *, since: datetime, known: set[str]
) -> list[RunEvent]:
    """The started and finished events the runs' figures make that are not ``known`` yet.

    Only what happened at or after ``since`` (when run events were first turned on): a service
    that starts publishing does not replay the history of every earlier run."""
    found: list[RunEvent] = []
    for run in summaries:
        figures = run.as_dict()
        started = f"started:{run.run_id}"
        if run.started_at is not None and run.started_at >= since and started not in known:
            found.append(
                RunEvent(
                    event_id=started,
                    event="started",
                    run_id=run.run_id,
                    runs=[run.run_id],
                    at=run.started_at,
                    by=run.created_by,
                    figures=figures,
                )
            )
        finished = f"finished:{run.run_id}:{run.requested}"
        if run.finished_at is not None and run.finished_at >= since and finished not in known:
            found.append(
                RunEvent(
                    event_id=finished,
                    event="finished",
                    run_id=run.run_id,
                    runs=[run.run_id],
                    at=run.finished_at,
                    by=run.created_by,
                    figures=figures,
                )
            )
    return found


def merged(control: Sequence[RunEvent], runs: Sequence[RunEvent]) -> list[RunEvent]:
    """One round's events in the order they are published: the control records' in the
    topic's order (never reordered by their writers' clocks: a pause and its resume stay in
    order), the runs' by time, each placed before the first control event that came later."""
    ordered: list[RunEvent] = []
    pending = sorted(runs, key=lambda event: event.at)
    for event in control:
        while pending and pending[0].at < event.at:
            ordered.append(pending.pop(0))
        ordered.append(event)
    return ordered + pending


def in_progress(summaries: Iterable[RunSummary]) -> list[str]:
    """The runs a pause or a throttle holds: requested, not all answered, not cancelled."""
    return sorted(
        run.run_id for run in summaries if run.state in ("waiting", "running") and run.remaining
    )


def verified(
    run_id: str,
    verification_id: str,
    *,
    at: datetime,
    by: str | None,
    report: Mapping[str, Any],
) -> RunEvent:
    """The event of a finished ``migrator verify --run RUN`` (``report``: its figures)."""
    return RunEvent(
        event_id=f"verified:{run_id}:{verification_id}",
        event="verified",
        run_id=run_id,
        runs=[run_id],
        at=at,
        by=by,
        verification=dict(report),
    )


def hook_environment(event: RunEvent, *, app_id: str) -> dict[str, str]:
    """What a hook finds in its environment (the whole event is on its standard input as
    JSON): the fields a shell script uses most, as text (absent ones empty)."""
    figures = event.figures or {}
    auto = event.auto_pause or {}
    values: dict[str, object] = {
        "MIGRATOR_APP_ID": app_id,
        "MIGRATOR_EVENT": event.event,
        "MIGRATOR_EVENT_ID": event.event_id,
        "MIGRATOR_HOOK": event.hook,
        "MIGRATOR_RUN_ID": event.run_id,
        "MIGRATOR_RUNS": ",".join(event.runs),
        "MIGRATOR_AT": event.at.isoformat(),
        "MIGRATOR_BY": event.by,
        "MIGRATOR_REASON": event.reason,
        "MIGRATOR_THROTTLE_PER_S": event.throttle_per_s,
        "MIGRATOR_AUTO_PAUSE_KIND": auto.get("kind"),
        "MIGRATOR_REQUESTED": figures.get("requested"),
        "MIGRATOR_MIGRATED": figures.get("migrated"),
        "MIGRATOR_FAILED": figures.get("failed"),
        "MIGRATOR_ROLLED_BACK": figures.get("rolled_back"),
        "MIGRATOR_DURATION_S": figures.get("duration_s"),
    }
    return {name: "" if value is None else str(value) for name, value in values.items()}


def _time(value: object, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return fallback


def _text(value: object) -> str | None:
    return None if value is None else str(value)[:512]
