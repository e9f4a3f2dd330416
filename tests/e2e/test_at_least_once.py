"""MIGRATOR_PROCESSING_GUARANTEE=at_least_once: the same pipeline without Kafka transactions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from harness import Stack, Worker, produce_requests, request_value, seed, wait_for_outcomes

from streams import topics


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[Worker]:
    running = Worker(
        stack,
        app_id=f"e2e-alo-{uuid.uuid4().hex[:6]}",
        extra_env={"MIGRATOR_PROCESSING_GUARANTEE": "at_least_once"},
    ).start()
    yield running
    running.stop()


async def test_requests_get_outcomes_and_counters_add_up(stack: Stack, worker: Worker) -> None:
    users = await seed(stack, 200, prefix="alo-", problem_ratio=0.1)
    migrate = await produce_requests(stack, [request_value(u) for u in users])
    rollback = await produce_requests(
        stack, [request_value(u, action="rollback") for u in users[:20]]
    )
    outcomes = await wait_for_outcomes(stack, migrate + rollback)
    assert all(len(reads) == 1 for reads in outcomes.values())  # no crash here: no redelivery
    topics_seen = {reads[0].topic for reads in outcomes.values()}
    assert topics.MIGRATED in topics_seen and topics.FAILED in topics_seen
    stats = worker.stats()
    assert stats["requested"] == len(migrate) + len(rollback)
    assert stats["requested"] == stats["migrated"] + stats["rolled_back"] + stats["failed"]
