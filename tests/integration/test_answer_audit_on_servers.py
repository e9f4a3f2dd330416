"""The worker's answer audit on real Kafka and PostgreSQL: where a partition's audit begins.

A partition's first audit position (``AnswerAuditor._start``) reads the answer topics from the
answers of the last minute on (``PartitionReader.offsets_since``). When an answer topic had no
committed answer of that minute yet, it began at the partition's end: read *after* the lookup
by time, so a transaction committed in between (a batch of the flood the audit starts into) put
its answers below the audit's start, never read, and their requests were reported unanswered.
Seen in the scale-out test: a worker whose first audit round ran while the flood's first
batches committed reported the first three rollbacks of a partition (the first records of its
rolled-back partition) unanswered, although each had its answer. Here that interleaving is
forced: the batch commits right after the audit's lookup by time on the rolled-back topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams import answer_audit, topics
from streams.answer_audit import AnswerAuditor
from streams.codecs import Origin, origin_headers
from streams.group_offsets import GroupOffsets
from streams.partition_reader import PartitionReader
from streams.settings import Settings


@pytest.fixture
async def names(settings: Settings, unique: str) -> AsyncIterator[dict[str, str]]:
    """Topics of this test's own (the contract's names are shared by the session's tests)."""
    names = {
        "requested": f"audit-req-{unique}",
        "migrated": f"audit-migrated-{unique}",
        "rolled_back": f"audit-rolled-back-{unique}",
        "failed": f"audit-failed-{unique}",
        "dead_letter": f"audit-dead-letter-{unique}",
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, settings.topic_partitions, 1) for name in names.values()]
        )
        yield names
        await admin.delete_topics(list(names.values()))
    finally:
        await admin.close()


def answer(request_topic: str, offset: int) -> list[tuple[str, bytes]]:
    return origin_headers(Origin(request_topic, 0, offset, None))


async def last_stable_offset(settings: Settings, topic: str) -> int:
    reader = PartitionReader(settings.kafka_bootstrap_servers)
    try:
        return (await reader.ends(topic, [0]))[0]
    finally:
        await reader.stop()


async def test_answers_committed_while_the_audit_begins_are_read_and_a_loss_is_found(
    settings: Settings,
    pool: asyncpg.Pool,
    names: dict[str, str],
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app_id = f"audit-{unique}"
    settings = settings.model_copy(update={"app_id": app_id})
    monkeypatch.setattr(topics, "REQUESTED", names["requested"])
    monkeypatch.setattr(
        answer_audit,
        "ANSWER_TOPICS",
        (names["migrated"], names["failed"], names["rolled_back"], names["dead_letter"]),
    )
    bootstrap = settings.kafka_bootstrap_servers
    requests = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await requests.start()
    for n in range(5):
        await requests.send_and_wait(names["requested"], f"request {n}".encode(), partition=0)
    await requests.stop()

    # The worker: request 0 answered in a first batch; requests 1-4 in a second one whose
    # transaction is left open, its answers sent: 1 and 2 migrated, 3 rolled back (the first
    # record of the rolled-back partition), 4 skipped (a real loss, which must still be found).
    worker = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"audit-{unique}")
    await worker.start()
    request_partition = TopicPartition(names["requested"], 0)
    await worker.begin_transaction()
    await worker.send_and_wait(
        names["migrated"], b"0", partition=0, headers=answer(names["requested"], 0)
    )
    await worker.send_offsets_to_transaction({request_partition: 1}, app_id)
    await worker.commit_transaction()
    await worker.begin_transaction()
    for offset, topic in ((1, "migrated"), (2, "migrated"), (3, "rolled_back")):
        await worker.send_and_wait(
            names[topic],
            str(offset).encode(),
            partition=0,
            headers=answer(names["requested"], offset),
        )
    await worker.send_offsets_to_transaction({request_partition: 5}, app_id)

    # The second batch commits right after the audit's lookup by time on the rolled-back topic.
    looked_up = AIOKafkaConsumer.offsets_for_times
    committed = asyncio.Event()

    async def offsets_for_times(consumer: AIOKafkaConsumer, timestamps: dict[Any, int]) -> Any:
        found = await looked_up(consumer, timestamps)
        if not committed.is_set() and any(tp.topic == names["rolled_back"] for tp in timestamps):
            await worker.commit_transaction()
            while await last_stable_offset(settings, names["rolled_back"]) == 0:
                await asyncio.sleep(0.05)
            committed.set()
        return found

    monkeypatch.setattr(AIOKafkaConsumer, "offsets_for_times", offsets_for_times)
    group_offsets = GroupOffsets(list(bootstrap), app_id)
    resources: Any = SimpleNamespace(pool=pool, group_offsets=group_offsets)
    auditor = AnswerAuditor(settings, resources, owned=lambda: [0], name=lambda: "test")
    try:
        # The first round positions the partition (the group stands at 1) while the second
        # batch commits; the third judges requests 1-4 against the committed offset 5 the
        # second round saw.
        found: list[Sequence[Any]] = [await auditor.audit_round() for _ in range(3)]
    finally:
        await auditor.on_stop()
        await group_offsets.close()
        await worker.stop()
    assert committed.is_set()
    positions = await pool.fetch(
        "SELECT partition, audited_to FROM answer_audit WHERE app_id = $1 AND partition = 0",
        app_id,
    )
    assert [dict(row) for row in positions] == [{"partition": 0, "audited_to": 5}]
    # Requests 1-3 have their answers; 4 has none.
    assert [(row.finding.kind, row.finding.offset) for rows in found for row in rows] == [
        ("unanswered", 4)
    ]
