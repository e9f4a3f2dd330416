"""The run events of ``user-migration-runs``: one record per thing that happened to a rollout
(started, paused, auto-paused, resumed, throttled, cancelled, finished, verified).

One model for every kind, told apart by ``event``: a consumer that only wants finished runs
filters on one field, and a new kind is an additive change. ``event_id`` is derived from the
event's cause (the control record's offset, the run and its request count), never random, so
the workers publish each event once and a consumer can dedupe by it (the record key).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RUN_EVENTS_SCHEMA_VERSION = 1

RunEventKind = Literal[
    "started",
    "paused",
    "auto_paused",
    "resumed",
    "throttled",
    "cancelled",
    "finished",
    "verified",
]

# The hook each kind runs (gh-ost's naming: ``on-<what happened>``), an executable of that name
# in MIGRATOR_HOOKS_DIR.
HOOK_NAMES: dict[str, str] = {
    "started": "on-run-started",
    "paused": "on-run-paused",
    "auto_paused": "on-auto-pause",
    "resumed": "on-run-resumed",
    "throttled": "on-run-throttled",
    "cancelled": "on-run-cancelled",
    "finished": "on-run-finished",
    "verified": "on-run-verified",
}


class RunEvent(BaseModel):
    """What happened to a run (or, for a pause, resume or throttle, to the whole cluster and
    the runs then in progress)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = RUN_EVENTS_SCHEMA_VERSION
    event_id: str = Field(
        description="derived from the cause: control-<offset> (pause, resume, throttle, "
        "cancel: the control record's offset), started:<run>, finished:<run>:<requested>, "
        "verified:<run>:<verification>; the record key; the same id is never published twice"
    )
    event: RunEventKind
    run_id: str | None = Field(
        default=None, description="the run it is about; null for a pause, resume or throttle"
    )
    runs: list[str] = Field(
        default_factory=list,
        description="the runs it concerns: the run itself, or the runs in progress (not "
        "finished) when the cluster was paused, resumed or throttled",
    )
    at: datetime = Field(
        description="when it happened (the control record's time, the run's "
        "first or last answer, the verification's end)"
    )
    by: str | None = Field(default=None, description="who did it: an operator, or auto: host:pid")
    reason: str | None = None
    auto: bool = Field(default=False, description="a worker paused everyone by itself")
    auto_pause: dict[str, Any] | None = Field(
        default=None,
        description="auto_paused: the figures. kind failure_budget (budget, run_id or null for "
        "overall, failed, outcomes, allowed) or outage (server, unavailable_s, limit_s)",
    )
    throttle_per_s: float | None = Field(
        default=None, description="throttled: the cluster's ceiling in users/s, null when lifted"
    )
    figures: dict[str, Any] | None = Field(
        default=None,
        description="started, finished, cancelled: the run's figures as GET runs/{run_id} "
        "answers them (requested, done, migrated, failed, failed_by_code, rolled_back, "
        "duration_s, rate_per_s, started_at, finished_at, ...)",
    )
    verification: dict[str, Any] | None = Field(
        default=None, description="verified: what migrator verify reported (checked, findings, ...)"
    )
    published_by: str | None = Field(default=None, description="the worker that published it")

    @property
    def hook(self) -> str:
        return HOOK_NAMES[self.event]
