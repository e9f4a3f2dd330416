"""Runs (named, staged rollouts): who is in a cohort, and what a run's answers add up to. Pure.

A cohort is a deterministic sample: a user's bucket (0-9999) is a hash of the user id alone, and
``--percent P`` takes the buckets below ``P × 100``. So the 1 % cohort is inside the 10 % cohort,
which is inside every larger one, and a user never changes cohort between runs or machines.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any, Literal

from agents.core.control_state import RunCancel
from agents.core.counters import RECENT_S

BUCKETS = 10_000
# The rate of a running run is measured over its answers of the last 10 s: the same window as
# the cluster's rate (``counters.RECENT_S``), so every ETA on a screen uses one definition.
RATE_WINDOW_S = float(RECENT_S)

# A cancelled run stays "cancelled" once its queued requests are answered: its figures say
# what was answered before the cancel, what the cancel answered and what replays did since.
RunState = Literal["waiting", "running", "finished", "cancelled"]
# How a run is shown: its own state, or the cluster's pause while it has requests waiting.
ShownState = Literal["waiting", "running", "finished", "cancelled", "paused", "auto-paused"]


def shown_state(state: RunState, *, paused: bool, auto: bool) -> ShownState:
    """A run not finished (nor cancelled) is "paused" or "auto-paused" while the cluster is:
    nothing of it moves until a resume (not "running, ETA 526m")."""
    if state in ("finished", "cancelled") or not paused:
        return state
    return "auto-paused" if auto else "paused"


def bucket(user_id: str) -> int:
    """The user's cohort bucket, 0 to 9,999: the same on every machine, in every run."""
    digest = hashlib.sha256(b"cohort:" + user_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_percent(user_id: str, percent: float) -> bool:
    """Whether the user belongs to the ``percent`` % cohort (0 < percent ≤ 100)."""
    return bucket(user_id) < round(percent * BUCKETS / 100)


def cohort(user_ids: Iterable[str], percent: float) -> list[str]:
    return [user for user in user_ids if in_percent(user, percent)]


@dataclass(frozen=True)
class AnswerCount:
    """How many answers of a run share an action, outcome and error code (one row of the
    grouped audit log), and how many of them came in the rate window."""

    action: str
    outcome: str
    error_code: str | None
    count: int
    recent: int
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    created_at: datetime
    created_by: str
    migrate_requested: int
    rollback_requested: int
    migrate_answered: int = 0
    migrated: int = 0
    failed: int = 0
    failed_by_code: dict[str, int] = field(default_factory=dict)
    rollback_answered: int = 0
    rolled_back: int = 0
    rollback_failed: int = 0
    rate_per_s: float = 0.0
    eta_s: float | None = None
    elapsed_s: float | None = None  # first answer → last (finished) or now
    started_at: datetime | None = None  # the first answer
    finished_at: datetime | None = None  # the answer that completed what was requested
    selections: list[dict[str, Any]] = field(default_factory=list)
    cancel: RunCancel | None = None  # the control topic's, not PostgreSQL's
    # The run's latest finished `migrator verify --run`: at, ok, checked, mismatched, by_check.
    verified: dict[str, Any] | None = None

    @property
    def requested(self) -> int:
        return self.migrate_requested + self.rollback_requested

    @property
    def answered(self) -> int:
        return self.migrate_answered + self.rollback_answered

    @property
    def remaining(self) -> int:
        """Requests of the run not answered yet, by its counts."""
        return max(0, self.requested - self.answered)

    @property
    def all_answered(self) -> bool:
        """Every request of the run is answered (by its counts): nothing left to cancel."""
        return self.requested > 0 and self.remaining == 0

    @property
    def state(self) -> RunState:
        if self.cancel is not None:
            return "cancelled"
        if self.finished_at is not None:
            return "finished"
        return "running" if self.answered else "waiting"

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "state": self.state,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "requested": self.migrate_requested,
            "done": self.migrate_answered,
            "migrated": self.migrated,
            "failed": self.failed,
            "failed_by_code": dict(sorted(self.failed_by_code.items())),
            "rollback_requested": self.rollback_requested,
            "rolled_back": self.rolled_back,
            "rollback_failed": self.rollback_failed,
            "remaining": self.remaining,
            "rate_per_s": round(self.rate_per_s, 1),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "duration_s": None if self.elapsed_s is None else round(self.elapsed_s, 1),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "selections": self.selections,
            "cancelled_at": self.cancel.at if self.cancel else None,
            "cancelled_by": self.cancel.by if self.cancel else None,
            "cancel_reason": self.cancel.reason if self.cancel else None,
            "last_verified": self.verified,
        }


def summarize(
    run: Mapping[str, Any],
    answers: Iterable[AnswerCount],
    *,
    now: datetime,
    cancel: RunCancel | None = None,
) -> RunSummary:
    """A run's figures from its row in ``migration_runs`` and its grouped answers, and its
    cancel if the control topic holds one."""
    counts = list(answers)
    migrate = [a for a in counts if a.action == "migrate"]
    rollback = [a for a in counts if a.action == "rollback"]
    failed_by_code: dict[str, int] = {}
    for answer in migrate:
        if answer.outcome == "failed":
            code = answer.error_code or "unknown"
            failed_by_code[code] = failed_by_code.get(code, 0) + answer.count
    started = min((a.first_at for a in counts), default=None)
    last = max((a.last_at for a in counts), default=None)
    requested = int(run["migrate_requested"]) + int(run["rollback_requested"])
    answered = sum(a.count for a in counts)
    recent = sum(a.recent for a in counts)
    remaining = max(0, requested - answered)
    finished = last if requested and remaining == 0 else None
    elapsed = None
    if started is not None:
        elapsed = ((finished or now) - started).total_seconds()
    if finished is not None:
        # Done: its average over its whole duration, not a rate that decays to 0 afterwards.
        rate = answered / max(1.0, elapsed or 0.0)
    else:
        window = RATE_WINDOW_S
        if started is not None:
            window = min(window, max(1.0, (now - started).total_seconds()))
        rate = recent / window
    eta = None
    if remaining and rate > 0:
        eta = remaining / rate
    return RunSummary(
        run_id=str(run["run_id"]),
        created_at=run["created_at"],
        created_by=str(run["created_by"]),
        migrate_requested=int(run["migrate_requested"]),
        rollback_requested=int(run["rollback_requested"]),
        migrate_answered=sum(a.count for a in migrate),
        migrated=sum(a.count for a in migrate if a.outcome == "migrated"),
        failed=sum(failed_by_code.values()),
        failed_by_code=failed_by_code,
        rollback_answered=sum(a.count for a in rollback),
        rolled_back=sum(a.count for a in rollback if a.outcome == "rolled_back"),
        rollback_failed=sum(a.count for a in rollback if a.outcome == "failed"),
        rate_per_s=rate,
        eta_s=eta,
        elapsed_s=elapsed,
        started_at=started,
        finished_at=finished,
        selections=list(run.get("selections") or []),
        cancel=cancel,
    )


def rate_window_start(now: datetime) -> datetime:
    return now - timedelta(seconds=RATE_WINDOW_S)


REPORT_COLUMNS = ("user_id", "action", "error_code", "retryable", "message", "request_id", "at")


def write_report(rows: list[dict[str, Any]], fmt: str, out: IO[str]) -> None:
    """A run's failed users as CSV (one header line, ``REPORT_COLUMNS``) or a JSON array."""
    if fmt == "json":
        json.dump(rows, out, indent=2)
        out.write("\n")
        return
    writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    # Booleans as JSON spells them (true/false), not as Python prints them.
    writer.writerows(
        {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in row.items()} for row in rows
    )
