"""What several commands print or read the same way: id lists, times, plans, a progress bar."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from schemas.events import MigrationRequest
from streams import topics


def add_id_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ids", action="append", help="comma-separated user ids")
    parser.add_argument("--file", help="file with one user id per line ('-' for stdin)")


def read_ids(args: argparse.Namespace) -> list[str] | None:
    """The user ids given by ``--ids`` and ``--file``, in order, each once; None if neither."""
    ids: list[str] = []
    for chunk in args.ids or []:
        ids += [part.strip() for part in chunk.split(",") if part.strip()]
    if args.file:
        handle = sys.stdin if args.file == "-" else Path(args.file).open(encoding="utf-8")
        with handle:
            ids += [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    return list(dict.fromkeys(ids)) if (args.ids or args.file) else None


def parse_time(value: str) -> datetime:
    """An ISO time; one without a zone is UTC."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Progress:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, total: int, label: str) -> None:
        self.total = max(total, 1)
        self.label = label
        self.started = time.monotonic()
        self._last = 0.0
        self._tty = sys.stderr.isatty()

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self._tty else 5.0):
            return
        self._last = now
        elapsed = max(now - self.started, 1e-6)
        fraction = min(done / self.total, 1.0)
        bar = "#" * int(fraction * 30)
        line = (
            f"{self.label} [{bar:<30}] {done}/{self.total} "
            f"{fraction * 100:5.1f}% {done / elapsed:,.0f}/s"
        )
        print(("\r" + line) if self._tty else line, end="" if self._tty else "\n", file=sys.stderr)
        if force and self._tty:
            print(file=sys.stderr)


def sample_lines(requests: Sequence[MigrationRequest], limit: int) -> list[str]:
    return [
        f"  {r.action:<8} {r.user_id:<32} request_id={r.request_id} attempt={r.attempt}"
        + ("  (dry run)" if r.dry_run else "")
        for r in requests[:limit]
    ]


def print_plan(
    what: str, requests: Sequence[MigrationRequest], *, sample: int, out: Callable[[str], None]
) -> None:
    out(f"{what}: {len(requests)} request(s) would be published to {topics.REQUESTED}")
    for line in sample_lines(requests, sample):
        out(line)
    if len(requests) > sample:
        out(f"  … and {len(requests) - sample} more")
    out("nothing was published: add --execute to publish")
