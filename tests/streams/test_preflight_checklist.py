"""The preflight's judgments over facts: each blocker it names, and what is only worth a look."""

from __future__ import annotations

from streams.cli.preflight_checklist import (
    Disk,
    Item,
    OpenTransaction,
    PartitionEnds,
    TopicFound,
    TopicWanted,
    exit_code,
    judge_connections,
    judge_disk,
    judge_durability,
    judge_group,
    judge_rehearsal,
    judge_schema,
    judge_topic,
    judge_transactions,
    kafka_release,
    render,
    still_open,
)

SHIPPED = [(1, "001_a.sql", "aa"), (2, "002_b.sql", "bb")]
WANTED = TopicWanted("requests", 4, 3, 4_194_304, "create it")
GOOD = TopicFound(4, 3, 2, 4_194_304)


def test_schema_current_behind_changed_ahead_and_absent() -> None:
    assert judge_schema(SHIPPED, {1: ("001_a.sql", "aa"), 2: ("002_b.sql", "bb")}).status == "ok"
    behind = judge_schema(SHIPPED, {1: ("001_a.sql", "aa")})
    assert (behind.status, behind.detail) == ("fail", "behind: 002_b.sql not applied")
    assert behind.fix.startswith("migrator db init")
    assert "changed" in judge_schema(SHIPPED, {1: ("001_a.sql", "xx")}).detail
    assert "ahead" in judge_schema(SHIPPED[:1], {1: ("001_a.sql", "aa"), 2: ("b", "bb")}).detail
    assert judge_schema(SHIPPED, None).status == "fail"


def test_topic_missing_wrong_partitions_isr_and_message_size() -> None:
    assert judge_topic(WANTED, GOOD).status == "ok"
    missing = judge_topic(WANTED, None)
    assert (missing.detail, missing.fix) == ("missing", "create it")
    wrong = judge_topic(WANTED, TopicFound(5, 3, 2, 4_194_304))
    assert wrong.detail == "5 partitions, MIGRATOR_TOPIC_PARTITIONS says 4"
    assert "min.insync.replicas 4 above" in judge_topic(WANTED, TopicFound(4, 3, 4, None)).detail
    small = judge_topic(WANTED, TopicFound(4, 3, 2, 1_048_588))
    assert small.status == "fail" and "max.message.bytes=4194304" in small.fix
    assert judge_topic(WANTED, TopicFound(4, 3, 1, None)).status == "warn"
    assert judge_topic(WANTED, TopicFound(4, 2, 2, None)).status == "fail"  # replication


def test_group_lag_and_offsets_beyond_the_end() -> None:
    item = judge_group("g", "Stable", 2, {0: 5, 1: 7}, {0: 9, 1: 7})
    assert (item.status, item.detail) == ("ok", "Stable, 2 members; lag 4 (0:4, 1:0)")
    assert judge_group("g", None, 0, {}, {0: 3}).detail.startswith("no committed offsets")
    assert judge_group("g", "Empty", 0, {0: 12}, {0: 3}).status == "fail"


def test_a_transaction_is_hanging_only_when_it_stays_at_the_same_offset() -> None:
    first = [
        PartitionEnds("t", 0, 10, 4),
        PartitionEnds("t", 1, 10, 8),
        PartitionEnds("t", 2, 5, 5),
    ]
    second = [
        PartitionEnds("t", 0, 11, 4),
        PartitionEnds("t", 1, 12, 12),
        PartitionEnds("t", 2, 6, 5),
    ]
    held = still_open(first, second)
    assert [(a.partition, b.last_stable) for a, b in held] == [(0, 4)]

    item = judge_transactions(3, 2, [OpenTransaction("t", 0, 4, 7, 30.0)], command="kt")
    assert item.status == "fail"
    assert item.detail.startswith("t[0] open from offset 4 for 30 s, 7 records held back")
    assert item.fix.endswith("kt abort --topic t --partition 0 --start-offset 4")
    assert judge_transactions(3, 2, [], command="kt").status == "ok"


def test_postgres_connections_and_durability() -> None:
    assert judge_connections(100, 3, 5, 2).status == "ok"
    assert judge_connections(20, 3, 1, 2).status == "fail"  # 28 needed, 17 usable
    assert judge_connections(40, 3, 20, 2).status == "warn"  # room, but not free now
    assert judge_durability("on", "on").status == "ok"
    off = judge_durability("off", "on")
    assert off.status == "fail" and "synchronous_commit = on" in off.fix
    assert judge_durability("on", "off").status == "fail"


def test_disk_shares_and_invisible_paths() -> None:
    gib = 1024**3
    assert judge_disk(Disk("Kafka", "/d", 50 * gib, 100 * gib)).status == "ok"
    assert judge_disk(Disk("Kafka", "/d", 10 * gib, 100 * gib)).status == "warn"
    assert judge_disk(Disk("Kafka", "/d", 1 * gib, 100 * gib)).status == "fail"
    assert judge_disk(Disk("Kafka", "/d", None, why_not="the server runs on k1")).status == "skip"


def test_rehearsal_failures_block_unless_accepted() -> None:
    assert judge_rehearsal(3, 3, {}).status == "ok"
    failing = judge_rehearsal(3, 2, {"unknown_legacy_step": ["u1"]})
    assert failing.status == "fail" and "unknown_legacy_step: 1 (u1)" in failing.detail
    accepted = judge_rehearsal(
        3, 2, {"unknown_legacy_step": ["u1"]}, accepted=frozenset({"unknown_legacy_step"})
    )
    assert accepted.status == "warn"
    assert judge_rehearsal(0, 0, {}).status == "skip"


def test_kafka_release_from_the_apis_it_serves() -> None:
    assert kafka_release({1: (4, 18), 80: (0, 1)}) == ">= 4.0"
    assert kafka_release({1: (0, 17), 80: (0, 1)}) == ">= 3.9"
    assert kafka_release({1: (0, 12)}) == "< 3.0"


def test_rendering_and_the_exit_code() -> None:
    items = [Item("a", "ok", "fine"), Item("b", "fail", "broken", "mend it")]
    assert render(items) == ["✓ a: fine", "✗ b: broken", "    fix: mend it"]
    assert exit_code(items) == 1
    assert exit_code(items[:1]) == 0
