"""The Faust app: topics, the stats table, the service that owns the pools, agents and views.

``create_app(settings)`` builds everything explicitly from a ``Settings`` object (tests build their
own); the module attribute ``app`` is made from the environment on first access, which is what
``faust -A streams.app worker`` and ``migrator worker`` use.

Topics carry raw bytes: requests are decoded with pydantic at the edge, so an invalid record
reaches the dead-letter topic with its original bytes instead of crashing the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import faust
from mode import Service

from agents.connections import create_pool, create_redis
from agents.migrator import MigrationCore
from agents.retry import RetryPolicy
from streams import gap_guard, topics
from streams.settings import Settings
from streams.topic_admin import ensure_topics

Headers = Sequence[tuple[str, bytes]]


class Resources(Service):
    """Owns the PostgreSQL pool and the Redis client for the worker's lifetime; agents borrow."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.pool: Any = None
        self.redis: Any = None
        self.core: MigrationCore | None = None
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
        )
        self.ready.set()

    async def on_stop(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
        if self.pool is not None:
            await self.pool.close()


@dataclass
class Migrator:
    """Everything the agents and views need, handed to them explicitly."""

    settings: Settings
    app: faust.App
    requests: Any
    outcome_topics: dict[str, Any]
    dead_letters: Any
    stats_deltas: Any
    stats: Any
    resources: Resources
    agents: dict[str, Any] = field(default_factory=dict)

    async def ready_core(self) -> MigrationCore:
        """The migration core, once the pools exist (Faust starts services after the agents)."""
        await self.resources.ready.wait()
        assert self.resources.core is not None
        return self.resources.core

    @asynccontextmanager
    async def commit_fence(self) -> AsyncIterator[None]:
        """Keep Faust's offset commits out while a batch is between its first send and its acks.

        Under exactly-once, Faust commits a partition's transaction with the offsets acked so
        far whenever its commit timer fires. Outputs already sent for a batch whose records are
        not acked yet would be committed without their offsets, and a crash would produce them
        a second time. So: first commit what earlier batches acked (their outputs and offsets
        together), then make commits skip until the batch's body ends. The stream acks the
        batch right after the body, before any other task runs, so the next commit covers both.
        """
        if not self.app.in_transaction:
            yield
            return
        consumer: Any = self.app.consumer  # Faust's Consumer: _commit_fut is not on ConsumerT
        await consumer.commit()
        while consumer._commit_fut is not None:  # noqa: SLF001 - Faust's commit-in-progress slot
            await consumer.maybe_wait_for_commit_to_finish()
        fence: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        consumer._commit_fut = fence  # noqa: SLF001 - a commit started now waits, then skips
        try:
            yield
        finally:
            if consumer._commit_fut is fence:  # noqa: SLF001
                consumer._commit_fut = None  # noqa: SLF001
            fence.set_result(None)

    async def save_stats(self, key: str, total: dict[str, Any], *, partition: int) -> None:
        """Set a stats table entry and write its changelog record in the partition's transaction.

        Faust's own table write goes through a send buffer that a commit can overtake; writing
        the changelog record here, awaited, keeps it in the same transaction as the offsets.
        """
        self.stats.data[key] = total
        changelog = self.stats.changelog_topic
        raw_key, _ = changelog.prepare_key(key, None)
        raw_value, _ = changelog.prepare_value(total, None)
        future = await self.publish(changelog, key=raw_key, value=raw_value, partition=partition)
        await future

    async def publish(
        self,
        topic: Any,
        *,
        key: bytes | None,
        value: bytes,
        partition: int,
        headers: Headers | None = None,
    ) -> Any:
        """Send into the transaction of the *source* partition (exactly-once), or plainly.

        Faust ties a send to a transaction through the destination's partition and its
        co-partitioned group, which only works for topics the app consumes. Outcome topics are
        not consumed here, so the transactional id of the source partition is named explicitly:
        outcomes, dead letters and stats deltas then commit or abort with the consumed offsets.
        """
        name = topic.get_topic_name()
        if self.app.in_transaction:
            group = self.app.assignor.group_for_topic(topics.REQUESTED)
            transactional_id = f"{self.app.conf.id}-{group}-{partition}"
            return await self.app.producer.send(
                name, key, value, partition, None, list(headers or []),
                transactional_id=transactional_id,
            )  # fmt: skip
        return await self.app.producer.send(
            name, key, value, partition, None, list(headers or []),
        )  # fmt: skip


def create_app(settings: Settings) -> Migrator:
    app = faust.App(
        settings.app_id,
        broker=settings.kafka_broker_url,
        processing_guarantee=settings.processing_guarantee,
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

    def declare(name: str, *, internal: bool = False, json_values: bool = False) -> Any:
        return app.topic(
            name,
            key_type=bytes,
            value_type=None if json_values else bytes,
            key_serializer="raw",
            value_serializer="json" if json_values else "raw",
            partitions=settings.topic_partitions,
            replicas=settings.topic_replication_factor,
            internal=internal,
        )

    requests = declare(topics.REQUESTED)
    gap_guard.install(topics.REQUESTED)
    outcome_topics = {kind: declare(name) for kind, name in topics.OUTCOME_TOPICS.items()}
    dead_letters = declare(topics.DEAD_LETTER)
    stats_deltas = declare(topics.stats_topic(settings.app_id), internal=True, json_values=True)
    stats = app.Table(
        "stats",
        default=dict,
        partitions=settings.topic_partitions,
        schema=faust.Schema(
            key_type=str, value_type=None, key_serializer="raw", value_serializer="json"
        ),
    )
    resources = Resources(settings)
    app.service(resources)  # type: ignore[arg-type]  # Faust starts instances as well as classes
    migrator = Migrator(
        settings=settings,
        app=app,
        requests=requests,
        outcome_topics=outcome_topics,
        dead_letters=dead_letters,
        stats_deltas=stats_deltas,
        stats=stats,
        resources=resources,
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
