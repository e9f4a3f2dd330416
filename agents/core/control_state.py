"""Run control, the pure part: the pause, throttle and run-cancel state every worker reads from
the control topic, the failure budget that pauses a bad rollout, and the pace a throttle imposes.

The control topic is compacted and keyed by what it controls (``pause``, ``throttle``,
``cancel:<run id>``): its latest record per key is the state, so a worker that starts (or
restarts) reads the topic from the beginning and knows at once whether it may take requests, how
fast, and which runs' queued requests it is to answer ``cancelled``.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.events import ErrorCode, Outcome

PAUSE = "pause"
THROTTLE = "throttle"
KEYS = (PAUSE, THROTTLE)
# ``cancel:<run id>``: one key per cancelled run, so compaction keeps every run's latest cancel.
CANCEL_PREFIX = "cancel:"


def cancel_key(run_id: str) -> str:
    return CANCEL_PREFIX + run_id


@dataclass(frozen=True)
class RunCancel:
    """A run's cancel: its request records already in the request topic when it was written
    (below ``before``'s offset of their partition) are answered ``failed``/``cancelled`` if not
    answered yet; records of the run published later (a replay) are processed as usual.

    The boundary is the request topic's end offsets, read when the cancel was written, not a
    time: offsets are exact, while the producers' clocks and the operator's need not agree.
    """

    run_id: str
    at: str
    by: str | None = None
    reason: str | None = None
    before: Mapping[int, int] = field(default_factory=dict, hash=False)

    def covers(self, partition: int, offset: int) -> bool:
        """Whether the record at this position was in the topic when the run was cancelled."""
        end = self.before.get(partition)
        return end is not None and offset < end

    def message(self) -> str:
        """The failed outcome's message: what happened, and that nothing was done."""
        why = f": {self.reason}" if self.reason else ""
        return (
            f"run {self.run_id} was cancelled at {self.at} by {self.by or 'unknown'}{why}; "
            "nothing was done (migrator replay brings the request back)"
        )

    def value(self) -> dict[str, Any]:
        """The control record's value (``before`` keyed by partition as JSON text)."""
        return {
            "run_id": self.run_id,
            "at": self.at,
            "by": self.by,
            "reason": self.reason,
            "before": {str(p): offset for p, offset in sorted(self.before.items())},
        }


@dataclass(frozen=True)
class ControlState:
    """What the control topic says now. ``rate`` is the cluster's ceiling in users/s."""

    paused: bool = False
    reason: str | None = None
    by: str | None = None
    at: str | None = None
    auto: bool = False
    rate: float | None = None
    rate_by: str | None = None
    rate_at: str | None = None
    # Cancelled runs by run id (``cancel:<run id>`` records).
    cancels: Mapping[str, RunCancel] = field(default_factory=dict, hash=False)

    def cancelled(
        self, run_id: str | None, partition: int | None, offset: int | None
    ) -> RunCancel | None:
        """The cancel that answers this request record, if any: its run is cancelled and the
        record was in the topic before the cancel (a record outside Kafka never is)."""
        if run_id is None or partition is None or offset is None:
            return None
        cancel = self.cancels.get(run_id)
        return cancel if cancel is not None and cancel.covers(partition, offset) else None

    def summary(self) -> str:
        """One line for a person: paused or running, by whom, since when, why; the throttle."""
        if self.paused:
            kind = "auto-paused" if self.auto else "paused"
            line = f"{kind} since {self.at} by {self.by}: {self.reason or '(no reason given)'}"
        else:
            line = "running" + (f" (resumed {self.at} by {self.by})" if self.by else "")
        if self.rate is not None:
            line += f"; throttled to {self.rate:g} users/s (by {self.rate_by})"
        return line

    def as_dict(self) -> dict[str, Any]:
        return {
            "paused": self.paused,
            "reason": self.reason,
            "by": self.by,
            "at": self.at,
            "auto": self.auto,
            "throttle_per_s": self.rate,
            "throttle_by": self.rate_by,
            "throttle_at": self.rate_at,
        }


def apply(state: ControlState, key: str, value: Mapping[str, Any] | None) -> ControlState:
    """The state after one control record (a ``None`` value, a tombstone, clears its key)."""
    if key == PAUSE:
        if value is None or not value.get("paused"):
            return replace(
                state,
                paused=False,
                reason=None if value is None else _text(value.get("reason")),
                by=None if value is None else _text(value.get("by")),
                at=None if value is None else _text(value.get("at")),
                auto=False,
            )
        return replace(
            state,
            paused=True,
            reason=_text(value.get("reason")),
            by=_text(value.get("by")),
            at=_text(value.get("at")),
            auto=bool(value.get("auto")),
        )
    if key == THROTTLE:
        rate = None if value is None else value.get("rate")
        valid = isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0
        return replace(
            state,
            rate=float(rate) if valid else None,  # type: ignore[arg-type]
            rate_by=None if value is None else _text(value.get("by")),
            rate_at=None if value is None else _text(value.get("at")),
        )
    if key.startswith(CANCEL_PREFIX):
        run_id = key[len(CANCEL_PREFIX) :]
        cancels = {k: v for k, v in state.cancels.items() if k != run_id}
        # The latest record per key is the state (compaction keeps only it): a tombstone or a
        # value that names no boundary leaves the run not cancelled, whatever came before.
        cancel = None if value is None else _run_cancel(run_id, value)
        if cancel is not None:
            cancels[run_id] = cancel
        return replace(state, cancels=cancels)
    return state  # a key of a later version: ignored, not fatal


def _run_cancel(run_id: str, value: Mapping[str, Any]) -> RunCancel | None:
    """A cancel from its record's value; None if it lacks its time or its offsets."""
    at, before = value.get("at"), value.get("before")
    if not run_id or not isinstance(at, str) or not isinstance(before, Mapping):
        return None
    offsets: dict[int, int] = {}
    for partition, offset in before.items():
        try:
            number = int(partition)
        except (TypeError, ValueError):
            return None
        if number < 0 or not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            return None
        offsets[number] = offset
    return RunCancel(
        run_id=run_id,
        at=at[:64],
        by=_text(value.get("by")),
        reason=_text(value.get("reason")),
        before=offsets,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)[:512]


def judged(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """The outcomes the failure budget judges: not the answers of a cancelled run, which are an
    operator's decision, not failures of the migration (a cancelled wave of 59,305 requests
    must not pause everyone)."""
    return [o for o in outcomes if o.error is None or o.error.code is not ErrorCode.CANCELLED]


@dataclass(frozen=True)
class FailureBudget:
    """Pause when more than ``percent`` % of the last ``window`` outcomes failed."""

    percent: float
    window: int

    @property
    def allowed(self) -> int:
        """Failures the window may hold without tripping."""
        return int(self.percent * self.window / 100)

    def describe(self) -> str:
        return f"{self.percent:g}%/{self.window}"


_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*/\s*(\d+)\s*$")


def parse_budget(text: str) -> FailureBudget | None:
    """``"5%/500"`` → 5 % of the last 500 outcomes; ``"off"`` → None. Raises ValueError."""
    if text.strip().lower() in ("off", "none", "0"):
        return None
    match = _BUDGET.match(text)
    if match is None:
        raise ValueError("must look like 5%/500 (percent of the last N outcomes) or off")
    percent, window = float(match.group(1)), int(match.group(2))
    if not 0 < percent < 100 or not 10 <= window <= 1_000_000:
        raise ValueError("percent must be in (0, 100) and the window 10 to 1,000,000 outcomes")
    return FailureBudget(percent, window)


@dataclass
class FailureWindows:
    """The last outcomes, overall and per run, each remembered as failed or not.

    A window trips once it holds more failures than the budget allows: with fewer outcomes than
    the window seen so far, the failures still have to exceed ``percent`` % of a full window, so
    a handful of early failures does not stop a rollout.
    """

    budget: FailureBudget
    _windows: dict[str | None, deque[bool]] = field(default_factory=dict)
    _failures: dict[str | None, int] = field(default_factory=dict)
    # The figures of the latest trip (``observe`` returned a reason): the auto-pause's control
    # record carries them, so run events and hooks get numbers, not a sentence to parse.
    tripped: dict[str, Any] | None = None

    def observe(self, outcomes: Iterable[tuple[str | None, bool]]) -> str | None:
        """Take ``(run_id, failed)`` pairs; the reason to pause if a window is over budget."""
        tripped: str | None = None
        for run_id, failed in outcomes:
            for scope in (None, run_id) if run_id is not None else (None,):
                window = self._windows.setdefault(scope, deque())
                window.append(failed)
                self._failures[scope] = self._failures.get(scope, 0) + failed
                if len(window) > self.budget.window:
                    self._failures[scope] -= window.popleft()
                if tripped is None and self._failures[scope] > self.budget.allowed:
                    where = "overall" if scope is None else f"in run {scope}"
                    self.tripped = {
                        "kind": "failure_budget",
                        "budget": self.budget.describe(),
                        "run_id": scope,
                        "failed": self._failures[scope],
                        "outcomes": len(window),
                        "allowed": self.budget.allowed,
                    }
                    tripped = (
                        f"failure budget {self.budget.describe()} spent {where}: "
                        f"{self._failures[scope]} of the last {len(window)} outcomes failed"
                    )
        return tripped

    def reset(self) -> None:
        """Forget what was seen (an operator resumed after looking)."""
        self._windows.clear()
        self._failures.clear()
        self.tripped = None

    def used(self) -> float:
        """How much of the budget the fullest window has spent: its failures over the failures
        it may hold (1.0 is the last one allowed; above it, the window trips). For an alert
        that warns before the pause, not after."""
        allowed = max(1, self.budget.allowed)
        return max(self._failures.values(), default=0) / allowed


class Pacer:
    """Spaces batches so that users/s stays at or under a rate (virtual scheduling).

    Each batch of ``n`` users is due ``n / rate`` seconds after the previous one; a pacer idle
    for a while grants no burst beyond one batch (the schedule never lags ``now``).
    """

    def __init__(self) -> None:
        self._due = 0.0

    def wait_s(self, n: int, rate: float | None, now: float) -> float:
        """Seconds to wait before a batch of ``n`` users may start; books its slot."""
        if rate is None or rate <= 0:
            self._due = now
            return 0.0
        start = max(self._due, now)
        self._due = start + n / rate
        return start - now


# A throttle is a rate in users/s for the whole cluster, between these: below one user a second
# it would be a pause in all but name (the banner saying "throttled" while nothing moves).
MIN_RATE = 1.0
MAX_RATE = 1_000_000.0


def share(rate: float | None, owned: int, total: int) -> float | None:
    """This worker's part of the cluster's ceiling: its share of the request partitions."""
    if rate is None or total <= 0:
        return None
    return rate * max(owned, 0) / total


def batch_limit(size: int, rate: float | None) -> int:
    """Batches under a throttle hold at most a quarter second of the rate: the pace stays even
    instead of one large batch followed by a long wait."""
    if rate is None:
        return size
    return max(1, min(size, int(rate / 4)))
