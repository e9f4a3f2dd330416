"""Which answers of ``processed_records`` may go: pure, no clock, no I/O.

A worker reads ``processed_records`` only for records it reads again: the records from the
group's committed offset on (a batch redone after a crash or a rebalance). Below the committed
offset Kafka hands no record to the group again, so those answers are dead weight, except to a
*zombie*: a worker frozen (SIGSTOP, a paused VM) with a batch in hand that wakes up after its
partition moved on. Its PostgreSQL transaction would find no answer and decide the record a
second time (its Kafka commit is fenced, but PostgreSQL is not). The retention bounds that: an
answer goes only once it is also older than the retention, so only a worker frozen longer than
the retention could do it. Keep the retention far above any freeze you can imagine (a day or
more in production; seconds only in tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

# The longest pause between two pruning rounds: rows pile up for at most this long past the
# retention. Shorter retentions (tests) are pruned more often, never more than once a second.
PRUNE_EVERY_MAX_S = 60.0
PRUNE_EVERY_MIN_S = 1.0
# Rows per DELETE: each batch is one short transaction, so a backlog of millions of rows never
# holds a lock or a snapshot for long (the batches' own inserts go on beside it).
PRUNE_BATCH = 5_000


@dataclass(frozen=True)
class PruneTarget:
    """Delete ``partition``'s answers below ``below_offset`` given before ``given_before``."""

    partition: int
    below_offset: int
    given_before: datetime


def prune_every_s(retention_s: float) -> float:
    """Seconds between two pruning rounds for a retention (0: pruning is off)."""
    if retention_s <= 0:
        return 0.0
    return max(PRUNE_EVERY_MIN_S, min(PRUNE_EVERY_MAX_S, retention_s / 2))


def prune_targets(
    committed: Mapping[int, int], *, retention_s: float, now: datetime
) -> list[PruneTarget]:
    """One target per partition with a committed offset above 0; none when pruning is off.

    A partition without a committed offset (never committed, or the offsets expired) is left
    alone: nothing says which of its records the group will not read again.
    """
    if retention_s <= 0:
        return []
    cutoff = now - timedelta(seconds=retention_s)
    return [
        PruneTarget(partition, offset, cutoff)
        for partition, offset in sorted(committed.items())
        if offset > 0
    ]
