"""What several commands print or read the same way: id lists, times, plans, a progress bar."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from schemas.events import MigrationRequest


def parse_time(value: str) -> datetime:
    """An ISO time; one without a zone is UTC."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def time_argument(value: str) -> datetime:
    """``parse_time`` for argparse: a bad time is a usage error naming the expected form."""
    try:
        return parse_time(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO time (e.g. 2026-11-24T08:00 or 2026-11-24T08:00Z)"
        ) from None


class Progress:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, total: int, label: str, *, start: int = 0) -> None:
        """``start``: what was done before this process began (a resumed job), left out of
        the rate and the ETA."""
        self.total = max(total, 1)
        self.label = label
        self.start = start
        self.started = time.monotonic()
        self._last = 0.0
        self._shown = -1
        self._tty = sys.stderr.isatty()

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self._tty else 5.0):
            return
        if force and done == self._shown and not self._tty:
            return  # the final line is already there
        self._last = now
        self._shown = done
        elapsed = max(now - self.started, 1e-6)
        fraction = min(done / self.total, 1.0)
        bar = "#" * int(fraction * 30)
        rate = (done - self.start) / elapsed
        line = (
            f"{self.label} [{bar:<30}] {done}/{self.total} "
            f"{fraction * 100:5.1f}% {rate:,.0f}/s ETA {_eta(self.total - done, rate)}"
        )
        print(("\r" + line) if self._tty else line, end="" if self._tty else "\n", file=sys.stderr)
        if force and self._tty:
            print(file=sys.stderr)


def _eta(remaining: int, rate: float) -> str:
    if remaining <= 0:
        return "0s"
    if rate <= 0:
        return "-"
    minutes, seconds = divmod(int(remaining / rate + 0.5), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def sample_lines(
    requests: Sequence[MigrationRequest], limit: int, trace_ids: Sequence[str]
) -> list[str]:
    """A plan's sample: each request with its id, attempt and the trace it starts."""
    return [
        f"  {r.action:<8} {r.user_id:<32} request_id={r.request_id} attempt={r.attempt} "
        f"trace_id={trace_id}" + ("  (dry run)" if r.dry_run else "")
        for r, trace_id in zip(requests[:limit], trace_ids, strict=False)
    ]
