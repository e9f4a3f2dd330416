"""``migrator worker``: check the dependencies, make sure the topics exist, run the Faust worker.

Exactly-once relies on outcome, dead-letter and stats topics being co-partitioned with the request
topic (outputs go to the source record's partition), so an existing topic with another partition
count is refused at start-up rather than discovered as a runtime error.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from agents.connections import DependencyUnavailable, connect, create_redis
from streams import topics
from streams.settings import Settings


class TopicMismatch(RuntimeError):
    pass


async def check_dependencies(settings: Settings) -> None:
    """Raise ``DependencyUnavailable`` with one line naming what is missing."""
    conn = await connect(settings)
    await conn.close()
    client = create_redis(settings)
    try:
        await client.ping()
    except Exception as exc:
        raise DependencyUnavailable(
            f"Redis at {settings.redis_url} is not reachable ({exc}); "
            'start one with: eval "$(migrator stack up)"'
        ) from exc
    finally:
        await client.aclose()
    await ensure_topics(settings)


async def ensure_topics(settings: Settings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10_000
    )
    try:
        await asyncio.wait_for(admin.start(), timeout=15)
    except Exception as exc:
        raise DependencyUnavailable(
            f"Kafka at {settings.kafka_broker_url} is not reachable ({exc}); "
            'start one with: eval "$(migrator stack up)"'
        ) from exc
    try:
        wanted = [*topics.PUBLIC_TOPICS, topics.stats_topic(settings.app_id)]
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
        missing = [name for name in wanted if name not in counts]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        name,
                        settings.topic_partitions,
                        settings.topic_replication_factor,
                        topic_configs=topics.topic_config(name),
                    )
                    for name in missing
                ]
            )
    finally:
        await admin.close()


def run_worker(settings: Settings, *, loglevel: str = "info") -> int:
    try:
        asyncio.run(check_dependencies(settings))
    except (DependencyUnavailable, TopicMismatch) as exc:
        print(f"migrator: {exc}", file=sys.stderr)
        return 2
    import faust

    from streams.app import create_app

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)

    migrator = create_app(settings)
    worker = faust.Worker(migrator.app, loglevel=loglevel)
    worker.execute_from_commandline()
    return 0
