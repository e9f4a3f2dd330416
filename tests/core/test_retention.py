"""Which answers of processed_records may be pruned: below the committed offset and older than
the retention, never when pruning is off or the partition has nothing committed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.core.retention import PRUNE_EVERY_MAX_S, PruneTarget, prune_every_s, prune_targets

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_each_partition_with_a_committed_offset_is_pruned_below_it_after_the_retention() -> None:
    targets = prune_targets({2: 10, 0: 7, 1: 0}, retention_s=60, now=NOW)

    assert targets == [
        PruneTarget(0, 7, NOW - timedelta(seconds=60)),
        PruneTarget(2, 10, NOW - timedelta(seconds=60)),
    ]


def test_nothing_is_pruned_when_the_retention_is_off() -> None:
    assert prune_targets({0: 100}, retention_s=0, now=NOW) == []
    assert prune_every_s(0) == 0


def test_rounds_come_twice_per_retention_within_bounds() -> None:
    assert prune_every_s(20) == 10
    assert prune_every_s(0.5) == 1.0
    assert prune_every_s(7 * 86_400) == PRUNE_EVERY_MAX_S
