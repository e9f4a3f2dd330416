"""Holes in a request partition, lost and real: every request record answered exactly once.

The requests are published in Kafka transactions (a commit marker after every few records, one
transaction aborted), so the partitions hold offsets no consumer is given: real holes, which must
not stall a partition. The worker loses records inside its own stream on purpose
(``dropping_worker.py``): holes inside its batches, which must be read again, never committed
past. Afterwards every committed request record has exactly one answer naming it, the partition
was read again only from records (never from a marker or the aborted records), and the
worker's own audit and ``migrator audit`` both find nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from harness import MIGRATOR, ROOT, Stack, Worker, request_value, seed, wait_for_outcomes

from streams import topics
from streams.cli.kafka_io import read_records
from streams.codecs import answered_offset
from streams.topic_admin import ensure_topics

pytestmark = [pytest.mark.e2e]

HERE = Path(__file__).parent
PER_TRANSACTION = 7
ABORTED = 3  # the fourth transaction is aborted
DROP = "11:4"  # the first copy of every offset ≡ 4 (mod 11) is lost inside the stream


async def produce_with_an_aborted_transaction(
    stack: Stack, values: list[dict[str, object]]
) -> set[str]:
    """Publish ``values`` in transactions of ``PER_TRANSACTION``, the ``ABORTED``th aborted;
    the request ids committed."""
    await ensure_topics(stack.settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.settings.kafka_bootstrap_servers,
        transactional_id="e2e-upstream-requests",
        enable_idempotence=True,
    )
    await producer.start()
    committed: set[str] = set()
    try:
        for number, index in enumerate(range(0, len(values), PER_TRANSACTION)):
            chunk = values[index : index + PER_TRANSACTION]
            await producer.begin_transaction()
            for value in chunk:
                await producer.send(
                    topics.REQUESTED,
                    json.dumps(value).encode(),
                    key=str(value["user_id"]).encode(),
                )
            await producer.flush()
            if number == ABORTED:
                await producer.abort_transaction()
            else:
                await producer.commit_transaction()
                committed.update(str(v["request_id"]) for v in chunk)
    finally:
        await producer.stop()
    return committed


@pytest.mark.timeout(600)
async def test_lost_records_are_read_again_and_real_holes_are_passed_over(stack: Stack) -> None:
    users = await seed(stack, 700, prefix="hole-")
    values: list[dict[str, object]] = [request_value(u, action="migrate") for u in users]
    committed = await produce_with_an_aborted_transaction(stack, values)
    aborted = {str(v["request_id"]) for v in values} - committed
    assert len(aborted) == PER_TRANSACTION
    worker = Worker(
        stack,
        "holes",
        extra_env={"E2E_DROP_OFFSET_MOD": DROP, "MIGRATOR_AUDIT_EVERY_S": "2"},
        command=[sys.executable, str(HERE / "dropping_worker.py")],
    ).start()
    try:
        by_id = await wait_for_outcomes(stack, sorted(committed), timeout_s=240)
        assert all(len(reads) == 1 for reads in by_id.values()), "a request answered twice"

        # Every committed request record has exactly one answer naming it; the aborted none.
        requests = {
            (r.partition, r.offset): json.loads(r.value)["request_id"]
            async for r in read_records(stack.settings, topics.REQUESTED)
        }
        assert set(requests.values()) == committed
        answers = Counter(
            [
                answered_offset(r.headers)
                async for r in read_records(
                    stack.settings, *topics.OUTCOME_TOPICS.values(), topics.DEAD_LETTER
                )
            ]
        )
        assert answers == Counter(dict.fromkeys(requests, 1))

        # Records were lost inside the stream, and the partition was read again only from them.
        log = worker.log_path.read_text(errors="replace") if worker.log_path else ""
        dropped = {(int(p), int(o)) for p, o in re.findall(r"E2E dropped (\d+):(\d+)", log)}
        assert len(dropped) >= 20, f"the fault was not injected:\n{worker.log_tail()}"
        assert dropped <= set(requests), "a record was dropped that is not a committed request"
        reread = {
            (int(p), int(start))
            for start, _, p in re.findall(
                r"records (\d+)\.\.(\d+) of partition (\d+) did not arrive", log
            )
        }
        assert reread, "no hole was noticed"
        # A record missing from a batch was lost inside the stream, whether the fault dropped it
        # or the stream lost it by itself (Faust's reader passes over offsets below its read
        # offset, which both a seek and the records it buffered before the seek set). An offset
        # that holds no record (a commit marker, an aborted record) is never read again from.
        real_holes = sorted(reread - set(requests))
        about = [
            line
            for line in log.splitlines()
            if any(f"partition {p}" in line or f"E2E dropped {p}:" in line for p, _ in real_holes)
        ]
        assert not real_holes, f"read again from a real hole: {real_holes}\n" + "\n".join(about)

        # The worker's own audit agrees (it judges a committed offset seen a round earlier).
        last: dict[int, int] = {}
        for partition, offset in requests:
            last[partition] = max(offset, last.get(partition, offset))
        deadline = time.monotonic() + 60
        while True:
            status, audit = worker.get("/api/v1/onboarding/migration/audit")
            assert status == 200, audit
            judged = {p["partition"]: p["audited_to"] for p in audit["partitions"]}
            if all(judged.get(p, 0) > o for p, o in last.items()):
                break
            assert time.monotonic() < deadline, f"the audit did not get there: {audit}"
            await asyncio.sleep(1)
        assert audit["ok"] and audit["findings"] == [], audit
        status, health = worker.get("/api/v1/onboarding/migration/health")
        assert health["status"] == "ok" and health["checks"]["answers"]["ok"], health

        # Every partition ends in a commit marker, which no batch holds: the worker commits
        # past it once it has seen the range holds no record, so the backlog reaches 0.
        deadline = time.monotonic() + 20
        while True:
            status, progress = worker.get("/api/v1/onboarding/migration/progress")
            assert status == 200, progress
            if progress["backlog"] == 0:
                break
            assert time.monotonic() < deadline, f"the backlog stays at {progress['backlog']}"
            await asyncio.sleep(1)

        # And so does the offline verifier.
        env = {**stack.env, "MIGRATOR_APP_ID": "holes"}
        audited = subprocess.run(
            [*MIGRATOR, "audit", "--json"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert audited.returncode == 0, audited.stdout + audited.stderr
        report = json.loads(audited.stdout)
        assert report["clean"] and report["request_records"] == len(requests), report
        assert report["answers"] == len(requests)
    finally:
        worker.stop()
