"""Live counters (contract §9) as plain JSON-ready dicts: pure arithmetic, no Faust.

The migration core turns the records a batch answers for the first time into a *delta* and adds
it to its partition's total in the batch's own PostgreSQL transaction, so a total holds exactly
the answers PostgreSQL holds. ``combine`` adds partition totals up and ``summary`` shapes the
public answer.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from schemas.events import Outcome

COUNTERS = ("requested", "migrated", "rolled_back", "failed", "dry_run", "already_done",
            "dead_lettered")  # fmt: skip
# Upper bounds (ms) of the latency histogram buckets; the last bucket is everything above.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000,
)  # fmt: skip
RATE_WINDOW_S = 60
_KEEP_SECONDS = 2 * RATE_WINDOW_S

Counters = dict[str, Any]


def empty() -> Counters:
    return {
        **dict.fromkeys(COUNTERS, 0),
        "failed_by_code": {},
        "latency_buckets": [0] * (len(LATENCY_BOUNDS_MS) + 1),
        "per_second": {},
    }


def batch_delta(
    outcomes: Sequence[Outcome],
    latencies_ms: Sequence[float | None],
    *,
    dead_lettered: int,
    now_s: int,
) -> Counters:
    """The counter changes one batch causes. A dry run counts in ``dry_run`` only."""
    delta = empty()
    delta["requested"] = len(outcomes)
    delta["dead_lettered"] = dead_lettered
    for outcome in outcomes:
        if outcome.dry_run:
            delta["dry_run"] += 1
            continue
        delta[outcome.outcome] += 1
        if outcome.already_done:
            delta["already_done"] += 1
        if outcome.error is not None:
            code = outcome.error.code.value
            delta["failed_by_code"][code] = delta["failed_by_code"].get(code, 0) + 1
    for latency in latencies_ms:
        if latency is not None:
            delta["latency_buckets"][bisect.bisect_left(LATENCY_BOUNDS_MS, latency)] += 1
    if outcomes:
        delta["per_second"][str(now_s)] = len(outcomes)
    return delta


def merge(total: Mapping[str, Any], delta: Mapping[str, Any], *, now_s: int) -> Counters:
    """``total + delta``, dropping per-second counts older than the rate window needs."""
    merged = empty()
    for name in COUNTERS:
        merged[name] = int(total.get(name, 0)) + int(delta.get(name, 0))
    for source in (total.get("failed_by_code", {}), delta.get("failed_by_code", {})):
        for code, count in source.items():
            merged["failed_by_code"][code] = merged["failed_by_code"].get(code, 0) + int(count)
    merged["latency_buckets"] = [
        int(a) + int(b)
        for a, b in zip(
            _buckets(total.get("latency_buckets")),
            _buckets(delta.get("latency_buckets")),
            strict=True,
        )
    ]
    horizon = now_s - _KEEP_SECONDS
    for source in (total.get("per_second", {}), delta.get("per_second", {})):
        for second, count in source.items():
            if int(second) > horizon:
                merged["per_second"][second] = merged["per_second"].get(second, 0) + int(count)
    return merged


def combine(parts: Iterable[Mapping[str, Any]], *, now_s: int) -> Counters:
    total = empty()
    for part in parts:
        total = merge(total, part, now_s=now_s)
    return total


def percentile(buckets: Sequence[int], quantile: float) -> float | None:
    """Upper bound (ms) of the bucket holding the quantile; None when nothing was measured.

    Latencies above the last bound are reported as that bound (JSON has no infinity).
    """
    count = sum(buckets)
    if count == 0:
        return None
    rank = quantile * count
    running = 0
    index = 0
    for index, bucket in enumerate(buckets):  # noqa: B007 - the index after the loop is the answer
        running += bucket
        if running >= rank:
            break
    return float(LATENCY_BOUNDS_MS[min(index, len(LATENCY_BOUNDS_MS) - 1)])


def rate_per_s(per_second: Mapping[str, int], *, now_s: int) -> float:
    """Outcomes per second over the last minute."""
    start = now_s - RATE_WINDOW_S
    return round(
        sum(c for s, c in per_second.items() if start < int(s) <= now_s) / RATE_WINDOW_S, 2
    )


def summary(total: Mapping[str, Any], *, now_s: int) -> dict[str, Any]:
    """The public ``stats`` answer: integer counters at the top level, then derived figures."""
    buckets = _buckets(total.get("latency_buckets"))
    return {
        **{name: int(total.get(name, 0)) for name in COUNTERS},
        "failed_by_code": dict(sorted(total.get("failed_by_code", {}).items())),
        "latency_ms": {
            "p50": percentile(buckets, 0.50),
            "p95": percentile(buckets, 0.95),
            "p99": percentile(buckets, 0.99),
            "samples": sum(buckets),
        },
        "throughput_per_s_last_minute": rate_per_s(total.get("per_second", {}), now_s=now_s),
    }


def _buckets(value: Any) -> list[int]:
    size = len(LATENCY_BOUNDS_MS) + 1
    if not value:
        return [0] * size
    return [int(v) for v in value][:size] + [0] * max(0, size - len(value))
