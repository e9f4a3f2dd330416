"""A cluster of brokers and its replication: the stack's configuration, the settings, and the
check that refuses a worker against topics less replicated than asked (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import Settings, SettingsError
from streams.stack import launcher
from streams.stack.errors import StackError
from streams.stack.kafka import Node, replication, write_config
from streams.topic_replication import TopicReplication, refusal


def _props(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def test_three_brokers_replicate_three_times_two_in_sync() -> None:
    assert replication(1) == (1, 1)
    assert replication(2) == (2, 1)
    assert replication(3) == (3, 2)
    assert replication(5) == (3, 2)


def test_every_node_of_a_cluster_knows_all_voters_and_replicates_internal_topics(
    tmp_path: Path,
) -> None:
    nodes = [Node(1, 9001, 9101), Node(2, 9002, 9102), Node(3, 9003, 9103)]
    props = _props(write_config(tmp_path / "kafka-2", nodes[1], nodes))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9002,CONTROLLER://127.0.0.1:9102"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor"):
        assert props[key] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["min.insync.replicas"] == "2"


def test_a_single_broker_keeps_its_old_configuration(tmp_path: Path) -> None:
    node = Node(1, 9001, 9101)
    props = _props(write_config(tmp_path / "kafka", node, [node]))
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9101"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"


def test_cluster_exports_name_every_broker_and_the_replication() -> None:
    ports = launcher.Ports(
        kafka=1, kafka_controller=2, postgres=3, redis=4, kafka_more=[[5, 6], [7, 8]]
    )
    lines = launcher.exports(ports)
    assert lines[0] == "export KAFKA_BROKER_URL=kafka://127.0.0.1:1,127.0.0.1:5,127.0.0.1:7"
    assert "export MIGRATOR_TOPIC_REPLICATION_FACTOR=3" in lines
    assert "export MIGRATOR_TOPIC_MIN_INSYNC_REPLICAS=2" in lines
    single = launcher.exports(launcher.Ports(kafka=1, kafka_controller=2, postgres=3, redis=4))
    assert not [line for line in single if "MIGRATOR_" in line]
    assert launcher.server_names(3) == ("postgres", "redis", "kafka", "kafka-2", "kafka-3")


def test_a_stack_keeps_its_broker_count_and_refuses_another_over_its_data(tmp_path: Path) -> None:
    three = launcher.Ports(1, 2, 3, 4, kafka_more=[[5, 6], [7, 8]])
    assert launcher._broker_count(tmp_path, three, None) == 3
    assert launcher._broker_count(tmp_path, None, None) == 1
    assert launcher._broker_count(tmp_path, three, 1) == 1
    (tmp_path / "kafka" / "data").mkdir(parents=True)
    with pytest.raises(StackError, match="made with 3 broker"):
        launcher._broker_count(tmp_path, three, 1)
    with pytest.raises(StackError, match="between 1 and"):
        launcher._broker_count(tmp_path, None, 9)


def test_min_insync_above_the_replication_factor_is_refused_in_one_line() -> None:
    with pytest.raises(SettingsError, match="MIGRATOR_TOPIC_MIN_INSYNC_REPLICAS=2 exceeds"):
        Settings.from_env({"MIGRATOR_TOPIC_MIN_INSYNC_REPLICAS": "2"})
    settings = Settings.from_env(
        {"MIGRATOR_TOPIC_REPLICATION_FACTOR": "3", "MIGRATOR_TOPIC_MIN_INSYNC_REPLICAS": "2"}
    )
    assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (3, 2)


def test_instance_ids_are_plain_names() -> None:
    assert Settings.from_env({}).instance_id is None
    assert Settings.from_env({"MIGRATOR_INSTANCE_ID": "worker-0"}).instance_id == "worker-0"
    with pytest.raises(SettingsError, match="MIGRATOR_INSTANCE_ID"):
        Settings.from_env({"MIGRATOR_INSTANCE_ID": "a b"})


def test_topics_less_replicated_than_asked_are_named_and_more_is_fine() -> None:
    observed = [
        TopicReplication("user-migration-requested", 1, 1),
        TopicReplication("user-migration-migrated", 3, 2),
        TopicReplication("user-migration-failed", 3, None),
    ]
    line = refusal(observed, factor=3, min_insync=2)
    assert line is not None and "\n" not in line
    assert "MIGRATOR_TOPIC_REPLICATION_FACTOR=3: user-migration-requested (1)" in line
    assert "MIGRATOR_TOPIC_MIN_INSYNC_REPLICAS=2: user-migration-requested (1)" in line
    assert "user-migration-migrated" not in line
    assert refusal(observed[1:], factor=3, min_insync=2) is None
    assert refusal(observed, factor=1, min_insync=1) is None
