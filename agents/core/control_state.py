"""Run control, the pure part: the pause and throttle state every worker reads from the control
topic, the failure budget that pauses a bad rollout, and the pace a throttle imposes.

The control topic is compacted and keyed by what it controls (``pause``, ``throttle``): its
latest record per key is the state, so a worker that starts (or restarts) reads the topic from
the beginning and knows at once whether it may take requests and how fast.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

PAUSE = "pause"
THROTTLE = "throttle"
KEYS = (PAUSE, THROTTLE)


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
    return state  # a key of a later version: ignored, not fatal


def _text(value: object) -> str | None:
    return None if value is None else str(value)[:512]


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
                    tripped = (
                        f"failure budget {self.budget.describe()} spent {where}: "
                        f"{self._failures[scope]} of the last {len(window)} outcomes failed"
                    )
        return tripped

    def reset(self) -> None:
        """Forget what was seen (an operator resumed after looking)."""
        self._windows.clear()
        self._failures.clear()


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
