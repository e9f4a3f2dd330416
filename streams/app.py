"""The Faust app: topics, the stats table, the service that owns the pools, agents and views.

``create_app(settings)`` builds everything explicitly from a ``Settings`` object (tests build their
own); the module attribute ``app`` is made from the environment on first access, which is what
``faust -A streams.app worker`` and ``migrator worker`` use.

Topics carry raw bytes: requests are decoded with pydantic at the edge, so an invalid record
reaches the dead-letter topic with its original bytes instead of crashing the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from faust.types import TP
from mode import Service

from agents import mirror_repair
from agents.connections import create_pool, create_redis
from agents.migrator import MigrationCore
from agents.retry import RetryPolicy
from streams import topics
from streams.exactly_once import (
    MigratorApp,
    PartitionTransactions,
    Send,
    exclude_from_faust_commits,
)
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
        self.ready = asyncio.Event()

    async def on_start(self) -> None:
        # Here rather than only in `migrator worker`, so `faust -A streams.app worker` gets the
        # outcome and dead-letter topics too (agents wait for `ready` before they send).
        await ensure_topics(self.settings)
        self.pool = await create_pool(self.settings, min_size=2, max_size=10)
        self.redis = create_redis(self.settings)
        self.core = MigrationCore(
            self.pool,
            self.redis,
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
        """Repair the Redis mirror whenever Redis answers (see ``agents.mirror_repair``)."""
        await self.ready.wait()
        assert self.core is not None
        while not self.should_stop:
            await self.sleep(_MIRROR_LOOK_S)
            try:
                healed = await mirror_repair.heal(self.pool, self.redis)
            except Exception as exc:  # noqa: BLE001 - PostgreSQL or Redis away: look again later
                log.warning("Redis mirror repair: %s", exc)
                continue
            self.core.redis_down = not healed.redis_up

    async def on_stop(self) -> None:
        if self.transactions is not None:
            await self.transactions.stop()
        if self.redis is not None:
            await self.redis.aclose()
        if self.pool is not None:
            await self.pool.close()


@dataclass
class Migrator:
    """Everything the agents and views need, handed to them explicitly."""

    settings: Settings
    app: MigratorApp
    requests: Any
    outcome_topics: dict[str, Any]
    dead_letters: Any
    stats: Any
    resources: Resources
    transactions: PartitionTransactions | None = None
    agents: dict[str, Any] = field(default_factory=dict)

    async def ready_core(self) -> MigrationCore:
        """The migration core, once the pools exist (Faust starts services after the agents)."""
        await self.resources.ready.wait()
        assert self.resources.core is not None
        return self.resources.core

    def epoch(self) -> int:
        """Changes when a rebalance begins: a batch begun before it publishes nothing."""
        return self.transactions.epoch if self.transactions is not None else 0

    async def claim(self, partition: int, events: Sequence[Any], epoch: int) -> list[Any]:
        """The events of ``partition`` this worker is still to answer.

        Under exactly-once: none if the partition is no longer ours; not those already covered
        by a committed transaction (stale copies from before a seek); none if records before
        them never arrived (the partition is read again from the first missing one).
        """
        transactions = self.transactions
        if transactions is None:
            return list(events)
        if not transactions.owns(partition, epoch):
            return []
        # In offset order, each offset once: after a seek, copies read before it may still be
        # buffered next to the records read again.
        by_offset = {event.message.offset: event for event in events}
        wanted = transactions.unpublished(partition, sorted(by_offset))
        kept = [by_offset[offset] for offset in wanted]
        if not kept:
            return []
        restart = transactions.gap_before(partition, kept[0].message.offset)
        if restart is not None:
            await self.app.consumer.seek(TP(transactions.source_topic, partition), restart)
            return []
        return kept

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
            await producer.send(send.topic, send.key, send.value, partition, None,
                                list(send.headers))
            for send in sends
        ]  # fmt: skip
        for future in futures:
            await future
        return True


def new_transactional_producer(settings: Settings, transactional_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        max_request_size=topics.MAX_DEAD_LETTER_BYTES + 64 * 1024,
        request_timeout_ms=15_000,
    )


def create_app(settings: Settings) -> Migrator:
    app = MigratorApp(
        settings.app_id,
        broker=settings.kafka_broker_url,
        # Exactly-once is the service's own (streams/exactly_once.py); Faust's would put the
        # stats table's recovery and every rebalance in the way (see the README, "Failures").
        processing_guarantee="at_least_once",
        store="memory://",
        datadir=f"{settings.data_dir}/{settings.app_id}",
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_allow_declare=True,
        key_serializer="raw",
        value_serializer="raw",
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=settings.batch_size,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=max(4096, settings.batch_size * 4),
        producer_max_request_size=topics.MAX_DEAD_LETTER_BYTES + 64 * 1024,
        consumer_max_fetch_size=topics.MAX_REQUEST_RECORD_BYTES,
        web_transport="tcp://",
        # A worker that died is noticed within 10 s, not Faust's default 60 s, so its
        # partitions (and their open transactions) move to a live worker quickly.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        autodiscover=False,
        logging_config=None,
    )

    def declare(name: str) -> Any:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
            replicas=settings.topic_replication_factor,
        )

    requests = declare(topics.REQUESTED)
    outcome_topics = {kind: declare(name) for kind, name in topics.OUTCOME_TOPICS.items()}
    dead_letters = declare(topics.DEAD_LETTER)
    transactions = None
    if settings.processing_guarantee == "exactly_once":
        transactions = PartitionTransactions(
            source_topic=topics.REQUESTED,
            group_id=settings.app_id,
            app_id=settings.app_id,
            new_producer=lambda transactional_id: new_transactional_producer(
                settings, transactional_id
            ),
        )
        exclude_from_faust_commits(topics.REQUESTED)
        app.transactions = transactions
    # The latest counter totals of the request partitions this worker answers, as committed by
    # their batches' PostgreSQL transactions (``partition_counters`` holds the truth). Entries are
    # set directly, never through the changelog: recovery has nothing to check, nothing to lose.
    stats = app.Table(
        "stats",
        default=dict,
        partitions=settings.topic_partitions,
        schema=faust.Schema(
            key_type=str, value_type=None, key_serializer="raw", value_serializer="json"
        ),
    )
    resources = Resources(settings)
    resources.transactions = transactions
    app.service(resources)  # type: ignore[arg-type]  # Faust starts instances as well as classes
    migrator = Migrator(
        settings=settings,
        app=app,
        requests=requests,
        outcome_topics=outcome_topics,
        dead_letters=dead_letters,
        stats=stats,
        resources=resources,
        transactions=transactions,
    )

    from agents.migration_agent import register_agents
    from streams.views import register_views

    migrator.agents = register_agents(migrator)
    register_views(migrator)
    return migrator


_default: Migrator | None = None


def default() -> Migrator:
    """The app built from the environment, once per process."""
    global _default
    if _default is None:
        _default = create_app(Settings.from_env())
    return _default


def __getattr__(name: str) -> Any:
    if name == "app":
        return default().app
    raise AttributeError(name)
