"""The one-line summary of a run, like gh-ost's status line: pure formatting of ``progress``.

``migrator stats --watch`` prints it every few seconds and ``make demo`` shows the same line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def duration(seconds: float | None) -> str:
    """``42s``, ``3m07s``, ``2h05m``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def status_line(progress: Mapping[str, Any], *, elapsed_s: float, clock: str) -> str:
    """Done/total, %, rate, backlog, failures, ETA and elapsed time in one line."""
    stats = progress.get("stats", {})
    done = int(progress["legacy_total"]) - int(progress["remaining"])
    backlog = progress.get("backlog")
    failed = int(stats.get("failed", 0))
    parts = [
        f"[{clock}] migrated {int(progress['migrated']):,} of {int(progress['legacy_total']):,}",
        f"done {done:,} ({float(progress['percent']):.1f}%)",
        f"{float(progress['rate_per_s']):,.0f}/s",
        f"backlog {'?' if backlog is None else f'{int(backlog):,}'}",
        f"failed {failed:,} ({int(progress['failed_for_good']):,} for good)",
        f"ETA {backlog_eta(progress)}",
        f"elapsed {duration(elapsed_s)}",
    ]
    control = progress.get("control") or {}
    if control.get("paused"):
        kind = "AUTO-PAUSED" if control.get("auto") else "PAUSED"
        parts.append(f"{kind} by {control.get('by')}: {control.get('reason') or '-'}")
    elif control.get("throttle_per_s"):
        parts.append(f"throttled to {float(control['throttle_per_s']):,.0f}/s")
    return "; ".join(parts)


def backlog_eta(progress: Mapping[str, Any]) -> str:
    """When the requests published so far will be answered, at the last 10 s's rate (the
    dashboard's "ETA of the backlog"): "done" at a backlog of 0. Not the population's ETA,
    which counts users held out of every run (rolled back, failing for good) or never
    enqueued, and so never reaches 0 at the end of a run."""
    backlog = progress.get("backlog")
    if backlog is None:
        return "?"
    if int(backlog) == 0:
        return "done"
    rate = float(progress.get("rate_per_s") or 0)
    return duration(int(backlog) / rate) if rate > 0 else "?"


def finished(progress: Mapping[str, Any]) -> bool:
    """Every published request answered: nothing waits in the request topic."""
    return progress.get("backlog") == 0


def stalled(progress: Mapping[str, Any]) -> str | None:
    """Why the backlog cannot drain by itself (the cluster is paused), or None.

    A watch that waits for the end stops on it with this line, instead of printing the same
    paused line forever: nothing moves until someone resumes.
    """
    control = progress.get("control") or {}
    if finished(progress) or not control.get("paused"):
        return None
    kind = "auto-paused" if control.get("auto") else "paused"
    backlog = progress.get("backlog")
    waiting = "" if backlog is None else f" with {int(backlog):,} requests waiting"
    return (
        f"the cluster is {kind}{waiting} (by {control.get('by')}: "
        f"{control.get('reason') or '-'}); nothing moves until `migrator control resume` "
        "(see `migrator control status`)"
    )


# The checks that name a server (the others say what the worker does about it).
_SERVERS = {"postgres": "PostgreSQL", "redis": "Redis", "kafka": "Kafka"}


def down_servers(health: Mapping[str, Any]) -> str:
    """``Kafka down since 13:42:05`` for each server ``health`` says is not answering."""
    checks = health.get("checks") or {}
    down = [
        f"{label} down" + (f" since {checks[name]['since']}" if checks[name].get("since") else "")
        for name, label in _SERVERS.items()
        if name in checks and not checks[name].get("ok")
    ]
    return ", ".join(down) if down else "a server is not answering the worker"


def outage_line(health: Mapping[str, Any], *, clock: str, fallback: str) -> str:
    """The watch's line while the worker cannot tell progress (it answered 503)."""
    if not health.get("checks"):
        return f"[{clock}] progress unknown: {fallback}"
    return (
        f"[{clock}] progress unknown: {down_servers(health)}; the worker goes on by itself "
        "when it is back"
    )
