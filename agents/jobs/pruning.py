"""Pruning ``processed_records``: the answers no worker will read again (``agents.core.retention``
says which), deleted in short batches by one worker at a time.

One worker at a time: the round runs under a PostgreSQL advisory lock taken with ``try``, so
the other workers skip their round instead of queueing behind it (their turn comes at their
next round). It reads only the group's committed offsets, handed in by the caller (Kafka).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from agents.core.retention import PRUNE_BATCH, prune_targets
from agents.stores import postgres
from agents.stores.postgres import Pool

log = logging.getLogger(__name__)

LOCK_KEY = 0x7072756E65  # "prune": one pruner at a time


@dataclass
class Pruned:
    """What one round did: whether it held the lock, and the rows deleted per partition."""

    ran: bool
    deleted: dict[int, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


async def prune_processed(
    pool: Pool,
    *,
    app_id: str,
    committed: Mapping[int, int],
    retention_s: float,
    now: datetime,
    batch: int = PRUNE_BATCH,
) -> Pruned:
    """One round: every partition's dead answers, ``batch`` rows per statement."""
    targets = prune_targets(committed, retention_s=retention_s, now=now)
    if not targets:
        return Pruned(ran=False)
    async with pool.acquire() as conn:
        if not await postgres.try_advisory_lock(conn, LOCK_KEY):
            return Pruned(ran=False)  # another worker is pruning
        try:
            pruned = Pruned(ran=True)
            for target in targets:
                while True:
                    gone = await postgres.prune_processed_records(
                        conn,
                        app_id=app_id,
                        partition=target.partition,
                        below_offset=target.below_offset,
                        given_before=target.given_before,
                        limit=batch,
                    )
                    if gone:
                        pruned.deleted[target.partition] = (
                            pruned.deleted.get(target.partition, 0) + gone
                        )
                    if gone < batch:
                        break
            return pruned
        finally:
            await postgres.advisory_unlock(conn, LOCK_KEY)
