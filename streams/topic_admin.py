"""Creating the service's topics with matching partition counts (and refusing mismatches).

Exactly-once relies on outcome, dead-letter and stats topics being co-partitioned with the request
topic (outputs go to the source record's partition), so an existing topic with another partition
count is refused at start-up rather than discovered as a runtime error. So is an existing topic
replicated less than ``MIGRATOR_TOPIC_REPLICATION_FACTOR`` / ``MIN_INSYNC_REPLICAS`` ask
(``streams.topic_replication``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from streams import topics
from streams.connections import DependencyUnavailable, unreachable
from streams.settings import Settings
from streams.topic_replication import TopicReplication, refusal


class TopicMismatch(RuntimeError):
    """An existing topic's partition count differs from ``MIGRATOR_TOPIC_PARTITIONS``."""


class TopicUnderReplicated(TopicMismatch):
    """An existing topic has fewer copies (or in-sync copies) than the settings ask."""


def _min_insync_by_topic(responses: list[Any]) -> dict[str, int]:
    """``min.insync.replicas`` per topic from DescribeConfigs responses (what could be read)."""
    found: dict[str, int] = {}
    for response in responses:
        for resource in response.to_object().get("resources", []):
            if resource.get("error_code", 0) != 0:
                continue
            for entry in resource.get("config_entries", []):
                if entry.get("config_names") == "min.insync.replicas" and entry.get("config_value"):
                    found[resource["resource_name"]] = int(entry["config_value"])
    return found


async def _replication(admin: Any, described: list[dict[str, Any]]) -> list[TopicReplication]:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    names = [t["topic"] for t in described]
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
        min_insync = _min_insync_by_topic(responses)
    except Exception:  # noqa: BLE001 - a broker that will not say: the factor is still checked
        min_insync = {}
    return [
        TopicReplication(
            topic=t["topic"],
            factor=min((len(p["replicas"]) for p in t["partitions"]), default=0),
            min_insync=min_insync.get(t["topic"]),
        )
        for t in described
    ]


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
        control = topics.control_topic(settings.app_id)
        ours = [name for name in (*wanted, control) if name in present]
        described = [t for t in await admin.describe_topics(ours) if t.get("error_code", 0) == 0]
        existing = [t for t in described if t["topic"] != control]
        counts = {t["topic"]: len(t["partitions"]) for t in existing}
        mismatched = {
            name: count for name, count in counts.items() if count != settings.topic_partitions
        }
        if mismatched:
            raise TopicMismatch(
                f"topics {mismatched} do not have MIGRATOR_TOPIC_PARTITIONS="
                f"{settings.topic_partitions} partitions; all of them must match"
            )
        problem = refusal(
            await _replication(admin, described),
            factor=settings.topic_replication_factor,
            min_insync=settings.topic_min_insync_replicas,
        )
        if problem is not None:
            raise TopicUnderReplicated(problem)
        missing = [
            NewTopic(
                name,
                settings.topic_partitions,
                settings.topic_replication_factor,
                topic_configs=_with_min_insync(topics.topic_config(name), settings),
            )
            for name in wanted
            if name not in counts
        ]
        if control not in present:
            # One partition: one order for every change; compacted: the latest record per key
            # is the state, kept forever.
            missing.append(
                NewTopic(
                    control,
                    1,
                    settings.topic_replication_factor,
                    topic_configs=_with_min_insync(topics.CONTROL_TOPIC_CONFIG, settings),
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


def _with_min_insync(config: dict[str, str], settings: Settings) -> dict[str, str]:
    return {**config, "min.insync.replicas": str(settings.topic_min_insync_replicas)}
