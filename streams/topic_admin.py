"""Creating the service's topics with matching partition counts (and refusing mismatches).

Exactly-once relies on outcome, dead-letter and stats topics being co-partitioned with the request
topic (outputs go to the source record's partition), so an existing topic with another partition
count is refused at start-up rather than discovered as a runtime error.
"""

from __future__ import annotations

import asyncio
import logging

from streams import topics
from streams.connections import DependencyUnavailable, unreachable
from streams.settings import Settings


class TopicMismatch(RuntimeError):
    """An existing topic's partition count differs from ``MIGRATOR_TOPIC_PARTITIONS``."""


async def ensure_topics(settings: Settings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10_000
    )
    try:
        await asyncio.wait_for(admin.start(), timeout=15)
    except Exception as exc:
        raise DependencyUnavailable(unreachable("Kafka", settings.kafka_broker_url, exc)) from exc
    try:
        wanted = list(topics.PUBLIC_TOPICS)
        # Describe only topics that exist: a metadata request for a missing topic may create it
        # with the broker's default partition count on brokers that auto-create topics.
        present = set(await admin.list_topics())
        existing = await admin.describe_topics([name for name in wanted if name in present])
        counts = {t["topic"]: len(t["partitions"]) for t in existing if t.get("error_code", 0) == 0}
        mismatched = {
            name: count for name, count in counts.items() if count != settings.topic_partitions
        }
        if mismatched:
            raise TopicMismatch(
                f"topics {mismatched} do not have MIGRATOR_TOPIC_PARTITIONS="
                f"{settings.topic_partitions} partitions; all of them must match"
            )
        missing = [
            NewTopic(
                name,
                settings.topic_partitions,
                settings.topic_replication_factor,
                topic_configs=topics.topic_config(name),
            )
            for name in wanted
            if name not in counts
        ]
        control = topics.control_topic(settings.app_id)
        if control not in present:
            # One partition: one order for every change; compacted: the latest record per key
            # is the state, kept forever.
            missing.append(
                NewTopic(
                    control,
                    1,
                    settings.topic_replication_factor,
                    topic_configs=topics.CONTROL_TOPIC_CONFIG,
                )
            )
        if topics.RUN_EVENTS not in present:
            # One partition: a consumer reads every run's life in the order it happened.
            missing.append(
                NewTopic(
                    topics.RUN_EVENTS,
                    1,
                    settings.topic_replication_factor,
                    topic_configs=topics.RUN_EVENTS_TOPIC_CONFIG,
                )
            )
        if missing:
            await admin.create_topics(missing)
    finally:
        await admin.close()
