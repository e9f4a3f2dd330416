"""The service audits its own promise: a hole made behind its back is found, reported and repaired.

While the worker is stopped, Kafka's own ``kafka-consumer-groups --reset-offsets --shift-by 1``
moves the group's committed offset past a request record in every partition that has new ones:
no worker will ever read those records. Once the worker is back, its answer audit must report
each of them within a minute (health degraded with the partition and offset, ``GET audit``,
``/metrics``, a WARNING line); ``migrator audit`` must report them too (exit 1);
``migrator replay --unanswered --execute`` must publish exactly them again, after which the
findings close and the audit is clean. Then an answer is published twice behind the service's
back: a duplicated finding, closed by ``migrator audit --acknowledge``. Last, a migrated user's
session is deleted behind its back: ``migrator audit`` reports the answers PostgreSQL no longer
backs.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from harness import (
    ADMIN_TOKEN,
    MIGRATOR,
    ROOT,
    Stack,
    Worker,
    chromium,
    produce_requests,
    request_value,
    seed,
    wait_for_outcomes,
)
from playwright.async_api import async_playwright

from streams import topics
from streams.cli.kafka_io import read_records
from streams.codecs import answered_offset
from streams.connections import connect

pytestmark = [pytest.mark.e2e]

APP_ID = "audit-e2e"
API = "/api/v1/onboarding/migration"


def migrator(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MIGRATOR, *args],
        env={**stack.env, "MIGRATOR_APP_ID": APP_ID},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def request_records(stack: Stack) -> dict[tuple[int, int], dict[str, Any]]:
    return {
        (r.partition, r.offset): json.loads(r.value)
        async for r in read_records(stack.settings, topics.REQUESTED)
    }


def wait_for_audit(worker: Worker, done: Any, timeout_s: float) -> tuple[float, dict[str, Any]]:
    """Poll ``GET audit`` (with the findings' user ids) until ``done(body)``; seconds taken and
    the body."""
    began = time.monotonic()
    while True:
        status, body = worker.get(f"{API}/audit", token=ADMIN_TOKEN)
        assert status == 200, body
        if done(body):
            return time.monotonic() - began, body
        assert time.monotonic() - began < timeout_s, f"not within {timeout_s} s: {body}"
        time.sleep(1)


async def dashboard_shows(worker: Worker, found: list[tuple[int, int]]) -> None:
    """The dashboard, in a real headless browser, names every unanswered record."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{worker.url}/dashboard")
        await page.wait_for_function(
            "document.getElementById('audit-summary').textContent.includes('unanswered')",
            timeout=20_000,
        )
        summary = await page.text_content("#audit-summary") or ""
        rows = await page.text_content("#audit") or ""
        health = await page.text_content("#health") or ""
        await browser.close()
    assert f"{len(found)} unanswered" in summary and "replay --unanswered" in summary, summary
    for partition, offset in found:
        assert f"partition {partition}, offset {offset}" in rows, rows
    assert "answers: request records without exactly one answer" in health, health
    assert not errors, errors


@pytest.mark.timeout(600)
async def test_a_hole_made_behind_the_services_back_is_found_reported_and_repaired(
    stack: Stack,
) -> None:
    users = await seed(stack, 240, prefix="audit-")
    worker = Worker(stack, APP_ID, extra_env={"MIGRATOR_AUDIT_EVERY_S": "5"}).start()
    first = await produce_requests(stack, [request_value(u) for u in users[:200]])
    await wait_for_outcomes(stack, first)
    wait_for_audit(worker, lambda body: len(body["partitions"]) == 4, 60)
    worker.stop()

    # Behind the service's back: new requests, and the group's offset moved past one per partition.
    before = await request_records(stack)
    await produce_requests(stack, [request_value(u) for u in users[200:]])
    after = await request_records(stack)
    new = sorted(set(after) - set(before))
    # In each partition with new records, the first of them is the one the shift skips.
    skipped_records = sorted(
        min(key for key in new if key[0] == partition) for partition in {p for p, _ in new}
    )
    # Kafka refuses to move a group's offsets while it has members; the stopped worker's
    # membership lasts until the group notices it left.
    deadline = time.monotonic() + 60
    while True:
        shifted = migrator(
            stack,
            "stack",
            "kafka-cli",
            "consumer-groups",
            "--group",
            APP_ID,
            "--reset-offsets",
            "--shift-by",
            "1",
            "--topic",
            topics.REQUESTED,
            "--execute",
        )
        if shifted.returncode == 0 and "NEW-OFFSET" in shifted.stdout:
            break
        assert time.monotonic() < deadline, shifted.stdout + shifted.stderr
        time.sleep(1)

    worker.start()
    try:
        # Found within a minute of the worker's start, wherever one looks.
        seconds, audit = wait_for_audit(
            worker, lambda body: len(body["findings"]) >= len(skipped_records), 60
        )
        print(f"hole found {seconds:.1f} s after the worker was ready")
        found = sorted((f["partition"], f["offset"]) for f in audit["findings"])
        assert found == skipped_records
        assert {f["kind"] for f in audit["findings"]} == {"unanswered"}
        assert all(f["user_id"] in users[200:] for f in audit["findings"])
        status, health = worker.get(f"{API}/health")
        assert status == 200 and health["status"] == "degraded", health
        named = health["checks"]["answers"]["unanswered"]
        assert sorted((int(p), o) for p, offsets in named.items() for o in offsets) == found
        status, metrics = worker.get("/metrics")
        for partition, _ in found:
            line = f'migrator_unanswered_records{{scope="cluster",partition="{partition}"}} 1'
            assert line in metrics
        assert "answer audit:" in worker.log_tail(400) and "WARNING" in worker.log_tail(400)
        await dashboard_shows(worker, found)

        # The offline verifier agrees, and says so with exit 1.
        audited = migrator(stack, "audit", "--json")
        assert audited.returncode == 1, audited.stdout + audited.stderr
        report = json.loads(audited.stdout)
        assert report["unanswered"]["count"] == len(found)
        assert sorted((s["partition"], s["offset"]) for s in report["unanswered"]["samples"]) == (
            found
        )
        assert report["duplicated"]["count"] == 0
        assert report["disagreeing_with_postgres"]["count"] == 0

        # Repair: exactly the unanswered records, published again as they were.
        planned = migrator(stack, "replay", "--unanswered")
        assert planned.returncode == 0, planned.stderr
        assert f"{len(found)} unanswered request record(s)" in planned.stdout
        repaired = migrator(stack, "replay", "--unanswered", "--execute")
        assert repaired.returncode == 0, repaired.stderr
        replays = {
            key: value for key, value in (await request_records(stack)).items() if key not in after
        }
        assert sorted(v["request_id"] for v in replays.values()) == sorted(
            after[key]["request_id"] for key in found
        )
        wait_for_audit(worker, lambda body: body["ok"], 60)
        clean = migrator(stack, "audit")
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert f"repaired (a replay of them was answered): {len(found)}" in clean.stdout
        for key in found:
            validated = migrator(stack, "validate", after[key]["user_id"])
            assert validated.returncode == 0, validated.stdout

        # An answer published twice behind the service's back is a duplicated finding. The
        # latest answer of a partition: the worker judges the records since its audit began.
        copy = [
            r
            async for r in read_records(stack.settings, topics.MIGRATED)
            if answered_offset(r.headers) is not None
        ][-1]
        producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(
                topics.MIGRATED,
                copy.value,
                key=copy.key,
                partition=copy.partition,
                headers=list(copy.headers),
            )
        finally:
            await producer.stop()
        _, audit = wait_for_audit(worker, lambda body: body["open"]["duplicated"] == 1, 60)
        duplicated = audit["findings"][0]
        assert (duplicated["partition"], duplicated["offset"]) == answered_offset(copy.headers)
        assert migrator(stack, "audit").returncode == 1
        acknowledged = migrator(stack, "audit", "--acknowledge")
        assert acknowledged.returncode == 0 and "acknowledged 1" in acknowledged.stdout
        status, health = worker.get(f"{API}/health")
        assert health["status"] == "ok", health

        # An answer PostgreSQL no longer backs: a migrated user's session deleted behind the back.
        victim = after[found[0]]["user_id"]
        conn = await connect(stack.settings)
        try:
            await conn.execute("DELETE FROM onboarding_sessions WHERE user_id = $1", victim)
        finally:
            await conn.close()
        audited = migrator(stack, "audit", "--json")
        assert audited.returncode == 1, audited.stdout + audited.stderr
        disagreeing = json.loads(audited.stdout)["disagreeing_with_postgres"]
        assert set(disagreeing["by_check"]) == {"migrated_without_session"}, disagreeing
        assert {s["user_id"] for s in disagreeing["samples"]} == {victim}
    finally:
        worker.stop()
