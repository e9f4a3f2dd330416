"""The worker's pruning of ``processed_records``: a small periodic service.

Every ``retention.prune_every_s`` it reads the group's committed offsets of the request topic
from Kafka and deletes the answers below them that are older than
``MIGRATOR_PROCESSED_RETENTION_S`` (``agents.jobs.pruning``: batched, one worker at a time).
Without it the table grows by one row per request record for ever; with it, it holds about
the retention's worth of answers plus whatever sits above the committed offsets.

A round that cannot reach Kafka or PostgreSQL is skipped and counted: pruning is never urgent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mode import Service

from agents.core.retention import prune_every_s
from agents.jobs.pruning import prune_processed
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.resources import Resources

log = logging.getLogger(__name__)


@dataclass
class PruneTally:
    """What this worker's pruning did since it started (``/metrics``)."""

    rounds: int = 0  # rounds that held the lock and ran
    deleted: int = 0
    errors: int = 0  # rounds skipped: Kafka or PostgreSQL away


class ProcessedPruner(Service):
    def __init__(self, settings: Settings, resources: Resources, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.resources = resources
        self.tally = PruneTally()

    @Service.task
    async def _prune(self) -> None:
        every = prune_every_s(self.settings.processed_retention_s)
        if every <= 0:
            return
        await self.resources.ready.wait()
        while not self.should_stop:
            await self.sleep(every)
            if self.should_stop:
                break
            try:
                await self.prune_once()
            except Exception as exc:  # noqa: BLE001 - a server away: the next round prunes
                self.tally.errors += 1
                log.debug("pruning processed_records: %s", exc)

    async def prune_once(self) -> int:
        """One round; the rows it deleted (0 when another worker held the lock)."""
        committed = await self.resources.group_offsets.committed()
        pruned = await prune_processed(
            self.resources.pool,
            app_id=self.settings.app_id,
            committed=committed,
            retention_s=self.settings.processed_retention_s,
            now=datetime.now(UTC),
        )
        if pruned.ran:
            self.tally.rounds += 1
            self.tally.deleted += pruned.total
        if pruned.total:
            log.info(
                "pruned %d answers of processed_records (below the committed offsets, older "
                "than %g s)",
                pruned.total,
                self.settings.processed_retention_s,
            )
        return pruned.total
