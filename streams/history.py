"""The recent past a dashboard tab needs when it opens, kept by the worker, not by the tab:
outcomes and failures per second over the last hour (the cluster's counters, sampled), and the
pauses and throttles this worker saw.

A tab opened after a run used to show an empty chart: its history began when it was opened.
Each worker keeps its own (from when it started); the run's own timeline (started, finished,
duration) is PostgreSQL's, in the runs.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from mode import Service

from agents.core import counters
from agents.stores import postgres
from streams.resources import Resources

log = logging.getLogger(__name__)

EVERY_S = 5.0
KEEP_S = 3600.0


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the epoch
    answered: int  # the cluster's ``requested`` counter: request records answered
    failed: int


class OutcomeHistory:
    """The last ``keep_s`` of samples; rates between consecutive ones (pure)."""

    def __init__(self, keep_s: float = KEEP_S) -> None:
        self._keep_s = keep_s
        self._samples: deque[Sample] = deque()

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)
        while self._samples and self._samples[0].t < sample.t - self._keep_s:
            self._samples.popleft()

    def points(self) -> list[dict[str, float]]:
        """Outcomes/s and failures/s between each sample and the one before (a counter that
        went back, as after the app id's counters were reset, reads 0, not a negative rate)."""
        return [
            {
                "t": round(b.t, 3),
                "outcomes_per_s": round(max(0, b.answered - a.answered) / (b.t - a.t), 2),
                "failures_per_s": round(max(0, b.failed - a.failed) / (b.t - a.t), 2),
            }
            for a, b in pairwise(self._samples)
            if b.t > a.t
        ]


class HistorySampler(Service):
    """Samples the cluster's counters (one small query) every ``EVERY_S``."""

    def __init__(
        self, resources: Resources, app_id: str, history: OutcomeHistory, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._resources = resources
        self._app_id = app_id
        self.history = history

    @Service.timer(EVERY_S)
    async def _sample(self) -> None:
        if not self._resources.ready.is_set():
            return
        try:
            stored = await postgres.counters(self._resources.pool, self._app_id)
        except postgres.FAILED as exc:  # PostgreSQL away: a gap in the chart, not an error
            log.debug("history not sampled: %s", exc)
            return
        now = time.time()
        total = counters.combine(stored.values(), now_s=int(now))
        self.history.add(Sample(now, int(total["requested"]), int(total["failed"])))
