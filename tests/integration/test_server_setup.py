"""What the service sets up on its servers: the schema, the topics, the Redis keys.

Each test drives project code (``apply_schema``, ``ensure_topics``, ``redis_mirror``) against
the real server and checks the server's state afterwards.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

import sql
from agents.jobs.schema import SchemaDrift, apply_schema
from agents.stores import redis_mirror
from streams import topics
from streams.connections import connect
from streams.settings import Settings
from streams.topic_admin import TopicMismatch, ensure_topics

_TABLES = {
    "legacy_onboarding_status",
    "onboarding_sessions",
    "onboarding_steps",
    "business_context_manifests",
    "onboarding_migration_log",
    "migration_requests",
    "processed_records",
    "partition_counters",
    "schema_migrations",
}


async def test_the_schema_applies_once_and_a_second_run_applies_nothing(
    settings: Settings,
) -> None:
    conn = await connect(settings)
    try:
        # The session fixture applied it once already.
        report = await apply_schema(conn)
        assert report.applied == []
        assert report.already == [name for _, name, _ in sql.ddl_files()]
        found = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert _TABLES <= {row["tablename"] for row in found}
    finally:
        await conn.close()


async def test_a_changed_ddl_file_that_was_applied_is_refused(settings: Settings) -> None:
    conn = await connect(settings)
    try:
        files = sql.ddl_files()
        version, name, text = files[0]
        edited = [(version, name, text + "\nALTER TABLE onboarding_sessions ADD COLUMN x int;\n")]
        with pytest.raises(SchemaDrift, match=name):
            await apply_schema(conn, edited + files[1:])
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'onboarding_sessions'"
        )
        assert "x" not in {row["column_name"] for row in columns}  # nothing of it ran
    finally:
        await conn.close()


async def test_the_audit_log_is_append_only(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        request_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO onboarding_migration_log (request_id, user_id, action, outcome)"
            " VALUES ($1, 'u-audit', 'migrate', 'migrated')",
            request_id,
        )
        for statement in (
            "UPDATE onboarding_migration_log SET outcome = 'x' WHERE request_id = $1",
            "DELETE FROM onboarding_migration_log WHERE request_id = $1",
        ):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(statement, request_id)


async def _describe(
    settings: Settings, names: tuple[str, ...] = topics.PUBLIC_TOPICS
) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
        counts = {t["topic"]: len(t["partitions"]) for t in described}
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in counts]
        configs: dict[str, dict[str, str]] = {}
        for response in await admin.describe_configs(resources):
            for resource in response.resources:
                name, entries = resource[3], resource[4]
                configs[name] = {entry[0]: entry[1] for entry in entries}
        return counts, configs
    finally:
        await admin.close()


async def test_topics_are_created_with_the_configured_partitions_and_limits(
    stack_settings: Settings,
) -> None:
    await ensure_topics(stack_settings)
    await ensure_topics(stack_settings)  # a second start finds them and changes nothing
    counts, configs = await _describe(stack_settings)
    assert counts == dict.fromkeys(topics.PUBLIC_TOPICS, stack_settings.topic_partitions)
    for name in topics.PUBLIC_TOPICS:
        for key, value in topics.topic_config(name).items():
            assert configs[name][key] == value, (name, key)
    # Run control's topic: one partition (one order of changes), compacted (the state).
    control = topics.control_topic(stack_settings.app_id)
    counts, configs = await _describe(stack_settings, (control,))
    assert counts == {control: 1}
    assert configs[control]["cleanup.policy"] == "compact"


async def test_topics_with_another_partition_count_are_refused(stack_settings: Settings) -> None:
    await ensure_topics(stack_settings)
    other = stack_settings.model_copy(
        update={"topic_partitions": stack_settings.topic_partitions + 1}
    )
    with pytest.raises(TopicMismatch, match=topics.REQUESTED):
        await ensure_topics(other)
    counts, _ = await _describe(stack_settings)
    assert set(counts.values()) == {stack_settings.topic_partitions}  # nothing was changed


async def test_topics_less_replicated_than_asked_are_refused_in_one_line(
    stack_settings: Settings,
) -> None:
    """The stack's topics have one copy: settings asking for two are refused before anything
    is created, naming the variables and the topics."""
    from streams.topic_admin import TopicUnderReplicated

    await ensure_topics(stack_settings)
    safer = stack_settings.model_copy(
        update={"topic_replication_factor": 2, "topic_min_insync_replicas": 2}
    )
    with pytest.raises(TopicUnderReplicated) as refused:
        await ensure_topics(safer)
    message = str(refused.value)
    assert "\n" not in message
    assert "MIGRATOR_TOPIC_REPLICATION_FACTOR=2" in message and topics.REQUESTED in message
    assert "MIGRATOR_TOPIC_MIN_INSYNC_REPLICAS=2" in message


async def test_the_mirror_writes_a_session_under_the_contract_keys_and_removes_it(
    redis_client: aioredis.Redis,
) -> None:
    user, session_id = f"mirror-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    document = {
        "session_id": session_id,
        "user_id": user,
        "status": "in_progress",
        "updated_at": datetime(2026, 1, 2, tzinfo=UTC).isoformat(),
    }
    await redis_mirror.write_sessions(redis_client, [document])
    assert await redis_client.get(f"onboarding:user:{user}") == session_id.encode()
    pointer, stored = await redis_mirror.read_session(redis_client, user)
    assert (pointer, stored) == (session_id, document)
    await redis_mirror.write_sessions(
        redis_client, [], stale_sessions=[session_id], users_without_session=[user]
    )
    assert await redis_mirror.read_session(redis_client, user) == (None, None)
    assert not await redis_client.exists(f"onboarding:session:{session_id}")


async def test_kafkas_own_tools_run_against_the_stack(stack_settings: Settings) -> None:
    import os
    import subprocess
    import sys

    await ensure_topics(stack_settings)
    env = {**os.environ, "KAFKA_BROKER_URL": stack_settings.kafka_broker_url}
    listed = subprocess.run(
        [sys.executable, "-m", "streams.cli", "stack", "kafka-cli", "topics", "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert set(topics.PUBLIC_TOPICS) <= set(listed.stdout.split())
    # Kafka's console producer, as an operator would use it to hand-feed a request.
    scratch = f"scratch-{uuid.uuid4().hex[:8]}"

    def kafka_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "streams.cli", "stack", "kafka-cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )

    created = kafka_cli("topics", "--create", "--topic", scratch, "--partitions", "1")
    assert created.returncode == 0, created.stderr
    produced = kafka_cli(
        "console-producer",
        *["--topic", scratch, "--property", "parse.key=true", "--property", "key.separator= "],
        stdin='u-1 {"user_id": "u-1"}\n',
    )
    assert produced.returncode == 0, produced.stderr
    offsets = kafka_cli("get-offsets", "--topic", scratch)
    assert offsets.stdout.split() == [f"{scratch}:0:1"], offsets.stdout + offsets.stderr


def test_the_cli_names_every_kafka_tool_the_stack_runs() -> None:
    from streams.cli.stack import KAFKA_TOOLS
    from streams.stack.kafka import TOOLS

    assert KAFKA_TOOLS == tuple(TOOLS)
