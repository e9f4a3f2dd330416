"""Exactly-once under failure: a worker killed with SIGKILL mid-batch, and a rebalance.

After each scenario, a read_committed consumer must see exactly one outcome per request (none
lost, none duplicated), and the counters (kept in PostgreSQL, in each batch's transaction) must
equal the topics.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from harness import Stack, Worker, produce_requests, read_all, request_value, seed

from streams import topics

USERS = 3000


async def _wait_until(condition: object, timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(message)


async def _outcome_counts(stack: Stack, request_ids: set[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for read in await read_all(stack, *topics.OUTCOME_TOPICS.values(), idle_s=0.5):
        request_id = read.value["request_id"]
        if request_id in request_ids:
            counts[request_id] = counts.get(request_id, 0) + 1
    return counts


async def _assert_exactly_once(stack: Stack, request_ids: set[str], timeout_s: float) -> None:
    async def all_there() -> bool:
        return len(await _outcome_counts(stack, request_ids)) == len(request_ids)

    await _wait_until(all_there, timeout_s, "not every request got an outcome")
    counts = await _outcome_counts(stack, request_ids)
    duplicated = {rid: n for rid, n in counts.items() if n > 1}
    assert not duplicated, f"{len(duplicated)} request(s) got more than one outcome"
    assert set(counts) == request_ids


def _assert_counters_exact(worker: Worker, expected_requested: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        stats = worker.stats()
        if stats["requested"] >= expected_requested or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert stats["requested"] == expected_requested, stats
    assert stats["requested"] == (
        stats["migrated"] + stats["rolled_back"] + stats["failed"] + stats["dry_run"]
    ), stats


@pytest.mark.parametrize(
    ("count", "batch_size"),
    # Enough requests that the kill lands mid-run: 3,000 could all be answered (at 3,000 a
    # second) between two looks at the outcome topics.
    [(10_000, "200"), (20_000, "500")],
    ids=["small-batches", "20k-flood-adaptive-batches"],
)
async def test_sigkill_mid_batch_then_restart_loses_and_duplicates_nothing(
    stack: Stack, count: int, batch_size: str
) -> None:
    users = await seed(stack, count, prefix=f"kill-{uuid.uuid4().hex[:4]}-")
    app_id = f"e2e-kill-{uuid.uuid4().hex[:6]}"
    first = Worker(stack, app_id=app_id, extra_env={"MIGRATOR_BATCH_SIZE": batch_size}).start()
    request_ids = set(await produce_requests(stack, [request_value(u) for u in users]))

    async def some_done() -> bool:
        return len(await _outcome_counts(stack, request_ids)) >= 300

    await _wait_until(some_done, 90, "the first worker produced no outcomes")
    first.kill()  # SIGKILL: no shutdown, open transactions are left behind
    done_before = len(await _outcome_counts(stack, request_ids))
    assert done_before < count, "the worker finished before it could be killed mid-run"

    second = Worker(stack, app_id=app_id, port=first.port).start()
    try:
        await _assert_exactly_once(stack, request_ids, timeout_s=180)
        # A new app id reads the request topic from its start: every record in it is counted.
        _assert_counters_exact(second, len(await read_all(stack, topics.REQUESTED)))
    finally:
        second.stop()


async def test_two_workers_and_a_rebalance_keep_outcomes_and_counters_exact(
    stack: Stack,
) -> None:
    users = await seed(stack, USERS, prefix=f"pair-{uuid.uuid4().hex[:4]}-")
    app_id = f"e2e-pair-{uuid.uuid4().hex[:6]}"
    env = {"MIGRATOR_BATCH_SIZE": "200"}
    first = Worker(stack, app_id=app_id, extra_env=env).start()
    second = Worker(stack, app_id=app_id, extra_env=env)
    try:
        request_ids = set(await produce_requests(stack, [request_value(u) for u in users]))

        async def some_done() -> bool:
            return len(await _outcome_counts(stack, request_ids)) >= 300

        await _wait_until(some_done, 90, "no outcomes before the second worker joined")
        second.start()  # joins the group mid-run: partitions move between workers
        await _assert_exactly_once(stack, request_ids, timeout_s=180)
        # A new app id reads the request topic from its start: every record in it is counted.
        _assert_counters_exact(first, len(await read_all(stack, topics.REQUESTED)))
        # Either worker answers the same: each adds the other's partitions to its own. (The
        # one-minute rate, the re-validation sampler's running tally and the tables' live sizes
        # move with the clock between the two calls, so they are left out; both name the same
        # tables.)
        first_stats, second_stats = first.stats(), second.stats()
        assert _without_rate(first_stats) == _without_rate(second_stats)
        assert set(first_stats["tables"]) == set(second_stats["tables"])
    finally:
        second.stop()
        first.stop()


def _without_rate(stats: dict[str, object]) -> dict[str, object]:
    moving = ("throughput_per_s_last_minute", "revalidation", "tables")
    return {k: v for k, v in stats.items() if k not in moving}
