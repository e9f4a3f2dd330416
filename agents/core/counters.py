"""Live counters (contract §9) as plain JSON-ready dicts: pure arithmetic, no Faust.

The batch applier turns the records a batch answers for the first time into a *delta* and adds
it to its partition's total in the batch's own PostgreSQL transaction, so a total holds exactly
the answers PostgreSQL holds. ``combine`` adds partition totals up and ``summary`` shapes the
public answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from schemas.events import Outcome

COUNTERS = (
    "requested",
    "migrated",
    "rolled_back",
    "failed",
    "dry_run",
    "already_done",
    "dead_lettered",
)
# Request-to-outcome latency is kept in a log-linear histogram (HDR style): bucket i > 0 holds
# [FLOOR·GROWTHⁱ⁻¹, FLOOR·GROWTHⁱ) ms, bucket 0 everything below FLOOR. With 2 % wide buckets and
# interpolation inside the bucket, a percentile is off by at most 2 % of its value. Only buckets
# that were hit are stored (``{"index": count}``), so a total stays small.
LATENCY_FLOOR_MS = 0.1
LATENCY_GROWTH = 1.02
# Bounds (ms) of the coarse histogram exported to Prometheus.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
)
RATE_WINDOW_S = 60
# The rate progress and its ETA use: recent enough to follow a flood that lasts half a minute.
RECENT_S = 10
_KEEP_SECONDS = 2 * RATE_WINDOW_S

Counters = dict[str, Any]


def empty() -> Counters:
    return {
        **dict.fromkeys(COUNTERS, 0),
        "failed_by_code": {},
        "latency": {},
        "latency_sum_ms": 0.0,
        "per_second": {},
        # second → [answers with a latency, their latencies' sum in ms]: the recent mean
        "latency_per_second": {},
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
    timed = 0
    for latency in latencies_ms:
        if latency is not None:
            key = str(latency_bucket(latency))
            delta["latency"][key] = delta["latency"].get(key, 0) + 1
            delta["latency_sum_ms"] += latency
            timed += 1
    if timed:
        delta["latency_per_second"][str(now_s)] = [timed, round(delta["latency_sum_ms"], 3)]
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
    for source in (total.get("latency", {}), delta.get("latency", {})):
        for key, count in source.items():
            merged["latency"][key] = merged["latency"].get(key, 0) + int(count)
    # Totals kept before the sum was (an older version) start it from zero.
    merged["latency_sum_ms"] = round(
        float(total.get("latency_sum_ms", 0.0)) + float(delta.get("latency_sum_ms", 0.0)), 3
    )
    horizon = now_s - _KEEP_SECONDS
    for source in (total.get("per_second", {}), delta.get("per_second", {})):
        for second, count in source.items():
            if int(second) > horizon:
                merged["per_second"][second] = merged["per_second"].get(second, 0) + int(count)
    recent = merged["latency_per_second"]
    for source in (total.get("latency_per_second", {}), delta.get("latency_per_second", {})):
        for second, (count, sum_ms) in source.items():
            if int(second) > horizon:
                before = recent.get(second, (0, 0.0))
                recent[second] = [before[0] + int(count), round(before[1] + float(sum_ms), 3)]
    return merged


def recent_latency_ms(
    latency_per_second: Mapping[str, Sequence[float]], *, now_s: int, window_s: int = RECENT_S
) -> float | None:
    """The mean request-to-outcome latency of the answers of the last ``window_s`` whole
    seconds (None without any): what a request waits now, beside the lifetime percentiles,
    which keep the hours requests once waited out a pause."""
    start = now_s - 1 - window_s
    count = total = 0.0
    for second, (n, sum_ms) in latency_per_second.items():
        if start < int(second) <= now_s - 1:
            count += n
            total += sum_ms
    return round(total / count, 1) if count else None


def combine(parts: Iterable[Mapping[str, Any]], *, now_s: int) -> Counters:
    total = empty()
    for part in parts:
        total = merge(total, part, now_s=now_s)
    return total


def latency_bucket(latency_ms: float) -> int:
    if latency_ms < LATENCY_FLOOR_MS:
        return 0
    return int(math.log(latency_ms / LATENCY_FLOOR_MS) / math.log(LATENCY_GROWTH)) + 1


def bucket_bounds(index: int) -> tuple[float, float]:
    """``[low, high)`` in ms of histogram bucket ``index``."""
    if index == 0:
        return 0.0, LATENCY_FLOOR_MS
    return (
        LATENCY_FLOOR_MS * LATENCY_GROWTH ** (index - 1),
        LATENCY_FLOOR_MS * LATENCY_GROWTH**index,
    )


def percentile(histogram: Mapping[str, int], quantile: float) -> float | None:
    """The latency (ms) below which ``quantile`` of the samples fall, interpolated inside its
    bucket (within 2 %); None when nothing was measured."""
    counts = sorted((int(key), int(count)) for key, count in histogram.items() if int(count) > 0)
    total = sum(count for _, count in counts)
    if total == 0:
        return None
    rank = quantile * total
    running = 0
    for index, count in counts:
        if running + count >= rank:
            low, high = bucket_bounds(index)
            return round(low + (high - low) * max(0.0, rank - running) / count, 3)
        running += count
    return round(bucket_bounds(counts[-1][0])[1], 3)


def cumulative_counts(histogram: Mapping[str, int], bounds: Sequence[float]) -> list[int]:
    """Samples at or below each bound (a bucket counts where its midpoint falls)."""
    result = [0] * len(bounds)
    for key, count in histogram.items():
        low, high = bucket_bounds(int(key))
        middle = (low + high) / 2
        for position, bound in enumerate(bounds):
            if middle <= bound:
                result[position] += int(count)
    return result


def rate_per_s(
    per_second: Mapping[str, int], *, now_s: int, window_s: int = RATE_WINDOW_S
) -> float:
    """Outcomes per second over the last ``window_s`` whole seconds (the current one, still
    filling, is left out so a fresh second does not drag the rate down)."""
    start = now_s - 1 - window_s
    return round(sum(c for s, c in per_second.items() if start < int(s) <= now_s - 1) / window_s, 2)


def summary(total: Mapping[str, Any], *, now_s: int) -> dict[str, Any]:
    """The public ``stats`` answer: integer counters at the top level, then derived figures."""
    histogram = total.get("latency", {})
    return {
        **{name: int(total.get(name, 0)) for name in COUNTERS},
        "failed_by_code": dict(sorted(total.get("failed_by_code", {}).items())),
        "latency_ms": {
            "p50": percentile(histogram, 0.50),
            "p95": percentile(histogram, 0.95),
            "p99": percentile(histogram, 0.99),
            "samples": sum(int(count) for count in histogram.values()),
            "recent_mean": recent_latency_ms(total.get("latency_per_second", {}), now_s=now_s),
        },
        "throughput_per_s_last_minute": rate_per_s(total.get("per_second", {}), now_s=now_s),
        "rate_per_s": rate_per_s(total.get("per_second", {}), now_s=now_s, window_s=RECENT_S),
    }
