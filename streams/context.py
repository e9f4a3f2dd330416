"""What the agents and views are handed: the settings, the app, its topics and table, and the
resources (pools, the migration core) that live as long as the worker.

Its own module so that ``streams.app`` (which builds it), the agent and the views all import it
and none of them imports another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP
from mode import Service

from agents.batch_applier import MigrationCore
from agents.core.retry import RetryPolicy
from agents.jobs import mirror_repair
from agents.stores.postgres import PostgresStore
from agents.stores.redis_mirror import RedisMirror
from streams.answer_audit import AnswerAuditor
from streams.connections import create_pool, create_redis
from streams.control import ControlWatcher
from streams.exactly_once import MigratorApp, PartitionTransactions, Send
from streams.group_offsets import GroupOffsets
from streams.revalidation import Revalidator
from streams.settings import Settings
from streams.topic_admin import ensure_topics

log = logging.getLogger(__name__)

_MIRROR_LOOK_S = 1.0


class Resources(Service):
    """Owns the PostgreSQL pool and the Redis client for the worker's lifetime; agents borrow."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.pool: Any = None
        self.redis: Any = None
        self.core: MigrationCore | None = None
        self.transactions: PartitionTransactions | None = None  # stopped with the pools
        # The group's committed offsets, for the views and the answer audit (one admin client).
        self.group_offsets = GroupOffsets(settings.kafka_bootstrap_servers, settings.app_id)
        self.ready = asyncio.Event()

    async def on_start(self) -> None:
        # Here rather than only in `migrator worker`, so `faust -A streams.app worker` gets the
        # outcome and dead-letter topics too (agents wait for `ready` before they send).
        await ensure_topics(self.settings)
        self.pool = await create_pool(self.settings, min_size=2, max_size=10)
        self.redis = create_redis(self.settings)
        self.core = MigrationCore(
            PostgresStore(self.pool),
            RedisMirror(self.redis),
            retry=RetryPolicy(
                max_retries=self.settings.max_retries,
                base_delay_s=self.settings.retry_base_delay_s,
                max_delay_s=self.settings.retry_max_delay_s,
            ),
            app_id=self.settings.app_id,
        )
        self.ready.set()

    @Service.task
    async def _keep_mirror(self) -> None:
        """Repair the Redis mirror whenever Redis answers (see ``agents.jobs.mirror_repair``)."""
        await self.ready.wait()
        assert self.core is not None
        while not self.should_stop:
            await self.sleep(_MIRROR_LOOK_S)
            try:
                healed = await mirror_repair.heal(self.pool, self.redis)
            except Exception as exc:  # noqa: BLE001 - PostgreSQL or Redis away: look again later
                if not self.should_stop:
                    log.warning("Redis mirror repair: %s", exc)
                continue
            self.core.redis_down = not healed.redis_up

    async def on_stop(self) -> None:
        await self.group_offsets.close()
        if self.transactions is not None:
            await self.transactions.stop()
        if self.redis is not None:
            await self.redis.aclose()
        if self.pool is not None:
            await self.pool.close()


@dataclass
class ServiceContext:
    """Everything the agents and views need, handed to them explicitly."""

    settings: Settings
    app: MigratorApp
    requests: Any
    outcome_topics: dict[str, Any]
    dead_letters: Any
    stats: Any
    resources: Resources
    control: ControlWatcher
    revalidator: Revalidator
    auditor: AnswerAuditor
    agents: dict[str, Any] = field(default_factory=dict)
    # Request records in the batches this worker's lanes are applying now (the dashboard's
    # "in flight"): taken from the topic, not yet answered.
    in_flight: int = 0

    @property
    def transactions(self) -> PartitionTransactions | None:
        """The per-partition transactions under exactly-once; None under at-least-once."""
        return self.app.transactions

    async def ready_core(self) -> MigrationCore:
        """The migration core, once the pools exist (Faust starts services after the agents)."""
        await self.resources.ready.wait()
        assert self.resources.core is not None
        return self.resources.core

    def revoking(self) -> bool:
        """A rebalance is taking partitions away: held records must reach the lanes (they
        publish nothing) so that the rebalance is not kept waiting for them."""
        transactions = self.transactions
        if transactions is not None:
            return not transactions.positions.ready
        return bool(self.app.rebalancing)

    def epoch(self) -> int:
        """Changes when a rebalance begins: a batch begun before it publishes nothing."""
        return self.transactions.epoch if self.transactions is not None else 0

    async def claim(self, partition: int, events: Sequence[Any], epoch: int) -> list[Any]:
        """The events of ``partition`` this worker is still to answer.

        Under exactly-once: none if the partition is no longer ours; not those already covered
        by a committed transaction (stale copies from before a seek); none at or after a record
        that never arrived, before the batch or inside it (the partition is read again from the
        first missing one; see ``PartitionTransactions.claim``).
        """
        transactions = self.transactions
        if transactions is None:
            return list(events)
        positions = transactions.positions
        if not positions.owns(partition, epoch):
            return []
        # In offset order, each offset once: after a seek, copies read before it may still be
        # buffered next to the records read again.
        by_offset = {event.message.offset: event for event in events}
        tp = TP(transactions.source_topic, partition)

        async def seek(offset: int) -> None:
            await self.app.consumer.seek(tp, offset)

        wanted = await transactions.claim(partition, list(by_offset), seek)
        return [by_offset[offset] for offset in wanted]

    async def publish_batch(
        self, partition: int, epoch: int, sends: Sequence[Send], last_offset: int
    ) -> bool:
        """Publish one partition's answers of a batch; True once they are on the topics.

        Exactly-once: one Kafka transaction with the partition's next offset. At-least-once:
        plain sends, awaited before the records are acknowledged (Faust then commits them).
        """
        if self.transactions is not None:
            return await self.transactions.publish(partition, epoch, sends, last_offset)
        producer = self.app.producer
        futures = [
            await producer.send(
                send.topic, send.key, send.value, partition, None, list(send.headers)
            )
            for send in sends
        ]
        for future in futures:
            await future
        return True
