"""What ``migrator preflight`` asks the servers: facts only, judged by ``preflight_checklist``.

Kafka's hanging transactions are found by comparing, per partition, the last stable offset (the
end a read_committed consumer sees) with the high watermark, twice, a moment apart: a partition
whose last stable offset stays at the same open transaction is held by a producer that is not
finishing it. Why not Kafka's ``kafka-transactions find-hanging``: aiokafka has no admin call
for DescribeProducers / ListTransactions, and the Java tool needs Java and Kafka's jars where
the command runs (the dev stack has them, a production host need not); it also reports only
transactions open longer than ``--max-transaction-timeout`` (15 min by default) that the
coordinator forgot. The look here sees every transaction holding read_committed consumers back,
forgotten or merely abandoned (a producer killed mid-transaction holds them for its
``transaction.timeout.ms``), with its age from its first record; the fix line names
``kafka-transactions abort`` for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from streams import topics
from streams.cli.preflight_checklist import Disk, OpenTransaction, PartitionEnds, TopicFound
from streams.settings import Settings

KAFKA_TIMEOUT_S = 10.0
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", ""})


def is_local(host: str | None) -> bool:
    """Whether a server's paths are this machine's (a loopback address or a Unix socket)."""
    return host is None or host in _LOOPBACK


def disk_at(server: str, path: str | None, host: str | None) -> Disk:
    """The free space where ``server`` keeps its data, when that path is on this machine."""
    if path is None:
        return Disk(server, None, None, why_not="the server does not say where (privileges)")
    if not is_local(host):
        return Disk(server, path, None, why_not=f"the server runs on {host}")
    try:
        stat = os.statvfs(path)
    except OSError as exc:
        return Disk(server, path, None, why_not=exc.strerror or type(exc).__name__)
    return Disk(server, path, stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize)


def postgres_host(settings: Settings) -> str | None:
    return urlsplit(settings.database_url).hostname


def redis_host(settings: Settings) -> str | None:
    return (
        None if settings.redis_url.startswith("unix://") else urlsplit(settings.redis_url).hostname
    )


def kafka_host(settings: Settings) -> str:
    return settings.kafka_bootstrap_servers[0].rsplit(":", 1)[0]


# ---------------------------------------------------------------------------------------------
# Redis.


@dataclass(frozen=True)
class RedisFacts:
    version: str
    directory: str | None


async def redis_facts(settings: Settings) -> RedisFacts:
    from streams.connections import create_redis

    client = create_redis(settings)
    try:
        info = await client.info("server")
        try:
            found = await client.config_get("dir")
            directory = found.get("dir")
        except Exception:  # noqa: BLE001 - CONFIG renamed or refused on managed Redis
            directory = None
        return RedisFacts(str(info.get("redis_version", "unknown")), directory)
    finally:
        await client.aclose()


# ---------------------------------------------------------------------------------------------
# Kafka.


@dataclass
class KafkaFacts:
    cluster_id: str
    controller: int | None
    brokers: list[int]
    api_versions: dict[int, tuple[int, int]]  # of the first broker
    topics: dict[str, TopicFound | None]  # None: missing
    group_state: str | None = None
    group_members: int = 0
    committed: dict[int, int] = field(default_factory=dict)
    request_ends: dict[int, int] = field(default_factory=dict)
    log_dirs: str | None = None
    open_transactions: list[OpenTransaction] = field(default_factory=list)
    transaction_partitions: int = 0


def _configs(response: Any) -> dict[str, dict[str, str]]:
    """DescribeConfigs answers → resource name → config name → value."""
    found: dict[str, dict[str, str]] = {}
    for answer in response:
        for resource in answer.to_object()["resources"]:
            entries = resource["config_entries"]
            found[resource["resource_name"]] = {
                e["config_names"]: e["config_value"] for e in entries if e["config_value"]
            }
    return found


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


async def kafka_facts(settings: Settings, wanted: Sequence[str], wait_s: float) -> KafkaFacts:
    """Brokers, topics, the group and open transactions, within ``KAFKA_TIMEOUT_S`` per call."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.admin import ApiVersionRequest

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    bootstrap = settings.kafka_bootstrap_servers
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=8_000)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=8_000)

    async def timed(call: Any) -> Any:
        return await asyncio.wait_for(call, timeout=KAFKA_TIMEOUT_S)

    try:
        await timed(client.bootstrap())
        await timed(admin.start())
        cluster = await timed(admin.describe_cluster())
        brokers = sorted(b["node_id"] for b in cluster["brokers"])
        versions = await timed(client.send(brokers[0], ApiVersionRequest()))
        api_versions = {key: (low, high) for key, low, high in versions.api_versions}
        present = set(await timed(admin.list_topics()))
        existing = [name for name in wanted if name in present]
        described = await timed(admin.describe_topics(existing)) if existing else []
        configs = (
            _configs(
                await timed(
                    admin.describe_configs(
                        [
                            ConfigResource(
                                ConfigResourceType.TOPIC,
                                name,
                                {"min.insync.replicas": None, "max.message.bytes": None},
                            )
                            for name in existing
                        ]
                    )
                )
            )
            if existing
            else {}
        )
        found: dict[str, TopicFound | None] = {name: None for name in wanted}
        for topic in described:
            if topic.get("error_code", 0) != 0:
                continue
            parts = topic["partitions"]
            config = configs.get(topic["topic"], {})
            found[topic["topic"]] = TopicFound(
                partitions=len(parts),
                replication=min((len(p["replicas"]) for p in parts), default=0),
                min_insync_replicas=_int(config.get("min.insync.replicas")),
                max_message_bytes=_int(config.get("max.message.bytes")),
                under_replicated=sum(len(p["isr"]) < len(p["replicas"]) for p in parts),
            )
        broker_config = _configs(
            await timed(
                admin.describe_configs(
                    [
                        ConfigResource(
                            ConfigResourceType.BROKER,
                            str(brokers[0]),
                            {"log.dirs": None, "log.dir": None},
                        )
                    ]
                )
            )
        ).get(str(brokers[0]), {})
        facts = KafkaFacts(
            cluster_id=str(cluster.get("cluster_id")),
            controller=cluster.get("controller_id"),
            brokers=brokers,
            api_versions=api_versions,
            topics=found,
            log_dirs=broker_config.get("log.dirs") or broker_config.get("log.dir"),
        )
        await _group(admin, settings.app_id, facts, timed)
        await _transactions(settings, facts, wait_s)
        return facts
    finally:
        await admin.close()
        await client.close()


async def _group(admin: Any, group: str, facts: KafkaFacts, timed: Any) -> None:
    from aiokafka.errors import GroupCoordinatorNotAvailableError

    try:
        answers = await timed(admin.describe_consumer_groups([group]))
        described = answers[0].to_object()["groups"][0]
        state = described.get("state") or None
        facts.group_state = None if state == "Dead" else state
        facts.group_members = len(described.get("members") or [])
        offsets = await timed(admin.list_consumer_group_offsets(group))
        facts.committed = {
            tp.partition: meta.offset
            for tp, meta in offsets.items()
            if tp.topic == topics.REQUESTED and meta.offset >= 0
        }
    except GroupCoordinatorNotAvailableError:
        # No group has ever committed on this cluster (no __consumer_offsets yet).
        facts.group_state, facts.committed = None, {}


async def _ends(settings: Settings, tps: list[Any]) -> tuple[dict[Any, int], dict[Any, int]]:
    """(high watermarks, last stable offsets) of ``tps``."""
    from aiokafka import AIOKafkaConsumer

    from streams.connections import start_kafka_client, stop_kafka_client

    found = []
    for isolation in ("read_uncommitted", "read_committed"):
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            isolation_level=isolation,
            enable_auto_commit=False,
            request_timeout_ms=8_000,
        )
        await asyncio.wait_for(start_kafka_client(consumer), timeout=KAFKA_TIMEOUT_S)
        try:
            found.append(await asyncio.wait_for(consumer.end_offsets(tps), KAFKA_TIMEOUT_S))
        finally:
            await stop_kafka_client(consumer)
    return found[0], found[1]


def _looks(high: dict[Any, int], stable: dict[Any, int]) -> list[PartitionEnds]:
    return [PartitionEnds(tp.topic, tp.partition, high[tp], stable[tp]) for tp in sorted(high)]


async def _transactions(settings: Settings, facts: KafkaFacts, wait_s: float) -> None:
    from aiokafka import TopicPartition

    watched = [
        *topics.PUBLIC_TOPICS,
        topics.control_topic(settings.app_id),
    ]
    tps = [
        TopicPartition(name, p)
        for name in watched
        if (found := facts.topics.get(name)) is not None
        for p in range(found.partitions)
    ]
    facts.transaction_partitions = len(tps)
    if not tps:
        return
    high, stable = await _ends(settings, tps)
    facts.request_ends = {
        tp.partition: end for tp, end in high.items() if tp.topic == topics.REQUESTED
    }
    first = _looks(high, stable)
    if not any(e.open_transaction for e in first):
        return
    await asyncio.sleep(wait_s)
    from streams.cli.preflight_checklist import still_open

    second_high, second_stable = await _ends(settings, tps)
    held = still_open(first, _looks(second_high, second_stable))
    ages = await _ages(settings, [(TopicPartition(e.topic, e.partition), e) for _, e in held])
    facts.open_transactions = [
        OpenTransaction(
            e.topic,
            e.partition,
            e.last_stable,
            e.high_watermark - e.last_stable,
            ages.get((e.topic, e.partition)),
        )
        for _, e in held
    ]


async def _ages(
    settings: Settings, held: list[tuple[Any, PartitionEnds]]
) -> dict[tuple[str, int], float]:
    """Seconds since the first record of each open transaction was written (read uncommitted)."""
    import time

    from aiokafka import AIOKafkaConsumer

    from streams.connections import start_kafka_client, stop_kafka_client

    if not held:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        isolation_level="read_uncommitted",
        enable_auto_commit=False,
        request_timeout_ms=8_000,
    )
    await asyncio.wait_for(start_kafka_client(consumer), timeout=KAFKA_TIMEOUT_S)
    ages: dict[tuple[str, int], float] = {}
    try:
        consumer.assign([tp for tp, _ in held])
        for tp, ends in held:
            consumer.seek(tp, ends.last_stable)
        batches = await consumer.getmany(timeout_ms=3_000, max_records=len(held) * 50)
        now_ms = time.time() * 1000
        for tp, records in batches.items():
            if records:
                ages[(tp.topic, tp.partition)] = max(0.0, (now_ms - records[0].timestamp) / 1000)
    finally:
        await stop_kafka_client(consumer)
    return ages


def kafka_tools(settings: Settings) -> str:
    """How an operator runs Kafka's tools against these brokers, from here."""
    from streams.connections import stack_of

    if stack_of(settings.kafka_broker_url) is not None:
        return "migrator stack kafka-cli transactions"
    return f"kafka-transactions.sh --bootstrap-server {settings.kafka_bootstrap_servers[0]}"


def log_dir_disk(facts: KafkaFacts, host: str) -> Disk:
    path = facts.log_dirs.split(",")[0] if facts.log_dirs else None
    return disk_at("Kafka", path, host)
