"""Sums behind ``stats`` and ``progress``: pure, so they are tested without a worker.

Each request partition has its own counters (in the worker's ``stats`` table and in PostgreSQL);
an answer is the sum over partitions. ``?scope=local`` sums only the partitions this worker owns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from agents.core import counters

if TYPE_CHECKING:
    from agents.stores.postgres import ProgressCounts


class Partition(Protocol):
    """What a Kafka topic-partition looks like to the sum (Faust's ``TP`` is one)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


def owned_totals(
    assignment: Iterable[Partition],
    table: Mapping[str, Mapping[str, Any]],
    *,
    topic: str,
    now_s: int,
) -> counters.Counters:
    """The counters of the partitions of ``topic`` in ``assignment``, summed; the table is keyed
    by partition number as text (a partition this worker owns but never counted adds zero)."""
    owned = {str(tp.partition) for tp in assignment if tp.topic == topic}
    return counters.combine((table[key] for key in sorted(owned) if key in table), now_s=now_s)


def progress_answer(counts: ProgressCounts, summary: Mapping[str, Any]) -> dict[str, Any]:
    """How much of the legacy population is done: migrated, or failed for a reason only fixing
    the data cures (those are listed apart and not waited for); the ETA at the current rate."""
    total, migrated, failed_for_good = counts
    remaining = counts.remaining
    rate = float(summary["rate_per_s"])
    if remaining == 0:
        eta_s: float | None = 0.0
    else:
        eta_s = round(remaining / rate, 1) if rate > 0 else None
    return {
        "legacy_total": total,
        "migrated": migrated,
        "failed_for_good": failed_for_good,
        "remaining": remaining,
        "percent": round(100 * (total - remaining) / total, 2) if total else 100.0,
        "rate_per_s": rate,
        "eta_s": eta_s,
        "stats": dict(summary),
    }
