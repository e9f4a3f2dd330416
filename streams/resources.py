"""The resources a worker holds for its lifetime: the PostgreSQL pool, the Redis client and the
batch applier that uses them; the publisher's producers are stopped with them.

Its own module so that the services that borrow the pools (the sampler, the answer audit)
import it without importing the context that names those services.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mode import Service

from agents.batch_applier import BatchApplier
from agents.core.retry import RetryPolicy
from agents.jobs import mirror_repair
from agents.stores.postgres_batch import PostgresStore
from agents.stores.redis_mirror import RedisMirror
from streams.connections import create_pool, create_redis
from streams.group_offsets import GroupOffsets
from streams.publishers import BatchPublisher
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.tracing import WorkerTracing

log = logging.getLogger(__name__)

_MIRROR_LOOK_S = 1.0


class Resources(Service):
    """Owns the PostgreSQL pool and the Redis client for the worker's lifetime; agents borrow.

    The publisher is stopped with them: its producers outlive no pool; the tracing exports its
    last spans after them.
    """

    def __init__(
        self,
        settings: Settings,
        publisher: BatchPublisher,
        tracing: WorkerTracing,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.tracing = tracing
        self.pool: Any = None
        self.redis: Any = None
        self.batch_applier: BatchApplier | None = None
        self._publisher = publisher
        # The group's committed offsets, for the views and the answer audit (one admin client).
        self.group_offsets = GroupOffsets(settings.kafka_bootstrap_servers, settings.app_id)
        self.ready = asyncio.Event()

    async def on_start(self) -> None:
        # Here rather than only in `migrator worker`, so `faust -A streams.app worker` gets the
        # outcome and dead-letter topics too (agents wait for `ready` before they send).
        await ensure_topics(self.settings)
        self.pool = await create_pool(self.settings, min_size=2, max_size=10)
        self.redis = create_redis(self.settings)
        self.batch_applier = BatchApplier(
            PostgresStore(self.pool),
            RedisMirror(self.redis),
            retry=RetryPolicy(
                max_retries=self.settings.max_retries,
                base_delay_s=self.settings.retry_base_delay_s,
                max_delay_s=self.settings.retry_max_delay_s,
            ),
            app_id=self.settings.app_id,
            stage=self.tracing.stage,
        )
        self.ready.set()

    async def applier(self) -> BatchApplier:
        """The batch applier, once the pools exist (Faust starts services after the agents)."""
        await self.ready.wait()
        assert self.batch_applier is not None
        return self.batch_applier

    @Service.task
    async def _keep_mirror(self) -> None:
        """Repair the Redis mirror whenever Redis answers (see ``agents.jobs.mirror_repair``)."""
        applier = await self.applier()
        while not self.should_stop:
            await self.sleep(_MIRROR_LOOK_S)
            try:
                healed = await mirror_repair.heal(self.pool, self.redis)
            except Exception as exc:  # noqa: BLE001 - PostgreSQL or Redis away: look again later
                if not self.should_stop:
                    log.warning("Redis mirror repair: %s", exc)
                continue
            applier.redis_down = not healed.redis_up

    async def on_stop(self) -> None:
        await self.group_offsets.close()
        await self._publisher.stop()
        if self.redis is not None:
            await self.redis.aclose()
        if self.pool is not None:
            await self.pool.close()
        # Blocks while the exporter sends what it still holds (bounded by its own timeout).
        await asyncio.to_thread(self.tracing.shutdown)
