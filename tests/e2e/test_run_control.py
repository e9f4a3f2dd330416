"""Run control on the real stack, two workers of one app id, in the order an operator works:

a run at 1 % then one at 100 % whose counts match the topics (and `rollback --run` takes the
first back); a pause during a flood (nothing published while paused, nothing lost after the
resume, no rebalance); a throttle that holds the cluster's rate within 10 %; the sampler
finding a Redis key deleted behind its back and a legacy row changed after migration; the
failure budget pausing everyone on a batch of broken users; a Redis outage longer than allowed
pausing everyone too.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import two_workers
from harness import (
    ADMIN_TOKEN,
    Read,
    Stack,
    Worker,
    kill_server,
    produce_requests,
    read_all,
    request_value,
    restart_servers,
    seed,
)
from two_workers import API, control, leave_running, run, start_two, wait_until

from agents.core.cohorts import cohort
from agents.stores.redis_mirror import user_key
from streams import topics
from streams.connections import opened

APP_ID = f"e2e-runs-{uuid.uuid4().hex[:6]}"
POPULATION = 4_000
WORKER_ENV = {
    "MIGRATOR_BATCH_SIZE": "200",
    "MIGRATOR_REVALIDATE_PER_S": "40",
    "MIGRATOR_OUTAGE_PAUSE_S": "3",
    "MIGRATOR_FAILURE_BUDGET": "5%/500",
}


@pytest.fixture(scope="module")
def workers(stack: Stack) -> Iterator[list[Worker]]:
    running = start_two(stack, APP_ID, WORKER_ENV)
    yield running
    for worker in running:
        worker.stop()


@pytest.fixture(autouse=True)
def running_unthrottled(stack: Stack, workers: list[Worker]) -> Iterator[None]:
    """Each test starts and leaves the cluster running and unthrottled, whatever happened."""
    yield
    leave_running(workers)


def migrator(stack: Stack, *args: str) -> str:
    return two_workers.migrator(stack, APP_ID, *args)


def outcomes(stack: Stack) -> list[Read]:
    return asyncio.run(read_all(stack, *topics.OUTCOME_TOPICS.values()))


def answered(stack: Stack) -> int:
    return len(outcomes(stack))


async def not_migrated(stack: Stack) -> int:
    async with opened(stack.settings) as (pool, _):
        found = await pool.fetchval(
            "SELECT count(*) FROM legacy_onboarding_status WHERE status <> 'migrated'"
        )
        return int(found)


def assignments(worker: Worker) -> int:
    """How many times the worker took a partition assignment in (each rebalance adds one)."""
    return worker.log_tail(1_000_000).count("Executing _on_partitions_assigned")


def test_a_run_at_1_percent_then_100_percent_counts_what_the_topics_hold(
    stack: Stack, workers: list[Worker]
) -> None:
    users = asyncio.run(seed(stack, POPULATION, prefix="run-", problem_ratio=0.01))
    migrator(stack, "enqueue", "--run", "canary", "--percent", "1", "--execute")
    wait_until(lambda: run(workers[0], "canary")["state"] == "finished", 90, "canary finished")
    canary = run(workers[0], "canary")
    assert canary["requested"] == len(cohort(users, 1)) > 0

    remaining = asyncio.run(not_migrated(stack))
    migrator(stack, "enqueue", "--run", "full", "--percent", "100", "--execute")
    wait_until(lambda: run(workers[0], "full")["state"] == "finished", 180, "full finished")
    full = run(workers[1], "full")  # either worker answers the same
    assert full["requested"] == remaining > POPULATION - 100

    # PostgreSQL commits a batch before its Kafka transaction: the topics catch up at once.
    wait_until(
        lambda: (
            len([r for r in outcomes(stack) if r.value.get("run_id")])
            == canary["requested"] + full["requested"]
        ),
        30,
        "every answer of both runs on the topics",
        every_s=1,
    )
    reads = outcomes(stack)
    for name, figures in (("canary", canary), ("full", full)):
        mine = [r.value for r in reads if r.value.get("run_id") == name]
        kinds = Counter(o["outcome"] for o in mine)
        codes = Counter(o["error"]["code"] for o in mine if o["outcome"] == "failed")
        assert len(mine) == figures["done"] == figures["requested"], name
        assert kinds["migrated"] == figures["migrated"], name
        assert kinds["failed"] == figures["failed"] == sum(figures["failed_by_code"].values())
        assert dict(codes) == figures["failed_by_code"], name
    assert canary["failed"] + full["failed"] > 0  # the seeded problems, told by code

    report = json.loads(migrator(stack, "runs", "report", "full", "--format", "json"))
    assert sorted(row["user_id"] for row in report) == sorted(
        r.value["user_id"] for r in reads if r.value.get("run_id") == "full" and r.value["error"]
    )
    status, csv_text = workers[0].get(f"{API}/runs/full/report?format=csv", token=ADMIN_TOKEN)
    assert status == 200 and csv_text.count("\n") == len(report) + 1
    assert workers[0].get(f"{API}/runs/no-such-run/report", token=ADMIN_TOKEN)[0] == 404
    assert workers[0].get(f"{API}/runs/no-such-run")[0] == 404

    plan = migrator(stack, "rollback", "--run", "canary")
    assert f"selected: {canary['migrated']} users holding a session that run canary" in plan
    migrator(stack, "rollback", "--run", "canary", "--execute")
    wait_until(
        lambda: run(workers[0], "canary")["rolled_back"] == canary["migrated"], 60, "rolled back"
    )

    def rolled() -> int:
        return sum(
            r.topic == topics.ROLLED_BACK and r.value["run_id"] == "canary" for r in outcomes(stack)
        )

    wait_until(lambda: rolled() == canary["migrated"], 30, "the rollbacks on the topic", 1)
    listing = migrator(stack, "runs")
    assert "canary" in listing and "full" in listing


def test_a_pause_during_a_flood_stops_every_worker_and_loses_nothing(
    stack: Stack, workers: list[Worker]
) -> None:
    users = asyncio.run(seed(stack, 30_000, prefix="flood-"))
    before = answered(stack)
    requested = int(workers[0].stats()["requested"])
    rebalances = [assignments(w) for w in workers]
    flood = [request_value(user) for user in users]
    asyncio.run(produce_requests(stack, flood))
    wait_until(
        lambda: int(workers[0].stats()["requested"]) > requested + 500, 60, "answers flow", 0.1
    )

    # The admin endpoint (the CLI's `control pause` writes the same record; tested below).
    status, _ = workers[1].request(
        "POST",
        f"{API}/control/pause",
        body={"reason": "e2e: looking at the canary", "by": "e2e"},
        token=ADMIN_TOKEN,
    )
    paused_at = time.monotonic()
    assert status == 202
    wait_until(lambda: all(control(w)["worker_paused"] for w in workers), 2, "both paused", 0.05)
    print(f"pause applied by both workers within {time.monotonic() - paused_at:.2f} s")
    time.sleep(2.0)  # the batches in hand finish and commit
    settled = answered(stack)
    time.sleep(5.0)
    assert answered(stack) == settled, "outcomes were published while paused"
    assert settled < before + len(flood), "the flood was over before the pause: test too slow"

    status, health = workers[0].get(f"{API}/health")
    assert status == 200 and health["control"]["paused"] and health["control"]["by"] == "e2e"
    assert workers[1].stats()["control"]["reason"] == "e2e: looking at the canary"
    _, metrics = workers[1].get("/metrics")
    assert 'migrator_paused{worker="' in metrics and '",auto="false"} 1' in metrics
    _, rows = workers[0].get(f"{API}/workers")
    assert all(row["paused"] for row in rows["workers"])

    resumed = migrator(stack, "control", "resume", "--by", "e2e", "--wait")
    assert "2 worker(s) taking requests" in resumed, resumed
    ids = {v["request_id"] for v in flood}
    wait_until(
        lambda: len({r.value["request_id"] for r in outcomes(stack)} & ids) == len(ids),
        180,
        "every flood request answered after the resume",
        every_s=2,
    )
    per_request = Counter(
        r.value["request_id"] for r in outcomes(stack) if r.value["request_id"] in ids
    )
    assert set(per_request.values()) == {1}, "a request was answered twice"
    assert [assignments(w) for w in workers] == rebalances, "the pause caused a rebalance"


def test_a_throttle_holds_the_cluster_rate_within_10_percent(
    stack: Stack, workers: list[Worker]
) -> None:
    rate = 300.0
    users = asyncio.run(seed(stack, 8_000, prefix="throttle-"))
    migrator(stack, "control", "throttle", "--rate", f"{rate:g}")
    wait_until(lambda: all(control(w)["throttle_per_s"] == rate for w in workers), 2, "throttled")
    asyncio.run(produce_requests(stack, [request_value(user) for user in users]))

    def done() -> int:
        stats = workers[0].stats()
        return int(stats["migrated"] + stats["failed"] + stats["rolled_back"])

    wait_until(lambda: done() > 0, 30, "answers")
    time.sleep(3)  # past the first batches
    start, started = done(), time.monotonic()
    time.sleep(12)
    measured = (done() - start) / (time.monotonic() - started)
    migrator(stack, "control", "throttle", "--off")
    print(f"throttle {rate:g} users/s: measured {measured:.0f} users/s")
    assert rate * 0.9 <= measured <= rate * 1.1
    wait_until(lambda: workers[0].get(f"{API}/progress")[1]["backlog"] == 0, 120, "drained")


def test_the_sampler_finds_a_deleted_redis_key_and_a_legacy_row_changed_after_migration(
    stack: Stack, workers: list[Worker]
) -> None:
    async def tamper() -> tuple[list[str], list[str]]:
        async with opened(stack.settings) as (pool, client):
            migrated = [
                r["user_id"]
                for r in await pool.fetch(
                    "SELECT user_id FROM onboarding_sessions ORDER BY user_id LIMIT 400"
                )
            ]
            deleted, changed = migrated[:200], migrated[200:]
            await client.delete(*[user_key(user) for user in deleted])
            await pool.execute(
                "UPDATE legacy_onboarding_status SET answers = answers || '{\"edited\": 1}',"
                " updated_at = now() WHERE user_id = ANY($1::text[])",
                changed,
            )
            return deleted, changed

    deleted, changed = asyncio.run(tamper())

    def found() -> dict[str, Any]:
        status, body = workers[0].get(f"{API}/revalidation", token=ADMIN_TOKEN)
        assert status == 200, body
        return dict(body)

    wait_until(
        lambda: (
            found()["mismatches"].get("session_in_redis", 0) > 0
            and any(d["user_id"] in changed for d in found()["drift"])
        ),
        60,
        "the sampler reports the deleted key and the drifted row",
    )
    findings = found()
    assert set(findings["latest_user_ids"]["session_in_redis"]) <= set(deleted)
    drifted = [d for d in findings["drift"] if d["user_id"] in changed]
    assert "answers" in drifted[0]["detail"]
    scraped = "".join(str(w.get("/metrics")[1]) for w in workers)  # each exports its own
    assert 'check="session_in_redis"}' in scraped

    # It never writes: the keys are still gone until an operator repairs them.
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        assert not client.exists(*[user_key(user) for user in deleted])
        victim = findings["latest_user_ids"]["session_in_redis"][0]
        migrator(stack, "resync-redis", "--ids", victim, "--execute")
        assert client.exists(user_key(victim))
    finally:
        client.close()


def test_a_redis_outage_longer_than_allowed_pauses_every_worker(
    stack: Stack, workers: list[Worker]
) -> None:
    users = asyncio.run(seed(stack, 3_000, prefix="outage-"))
    kill_server(stack, "redis")
    try:
        asyncio.run(produce_requests(stack, [request_value(user) for user in users]))
        wait_until(
            lambda: "Redis unavailable" in (control(workers[0])["reason"] or ""),
            60,
            "paused for the Redis outage",
        )
    finally:
        restart_servers(stack)
    state = control(workers[1])
    assert state["paused"] and state["auto"], state
    # The run events say it with the outage's figures (the pause record carries them).
    wait_until(
        lambda: any(
            (r.value.get("auto_pause") or {}).get("server") == "Redis"
            for r in asyncio.run(read_all(stack, topics.RUN_EVENTS, idle_s=0.5))
        ),
        30,
        "an auto_paused run event naming Redis",
    )
    outage = next(
        r.value["auto_pause"]
        for r in asyncio.run(read_all(stack, topics.RUN_EVENTS, idle_s=0.5))
        if r.value["event"] == "auto_paused"
    )
    assert outage["kind"] == "outage" and outage["unavailable_s"] >= outage["limit_s"] == 3
    migrator(stack, "control", "resume", "--reason", "e2e: Redis is back")
    wait_until(lambda: workers[0].get(f"{API}/progress")[1]["backlog"] == 0, 120, "drained")


def test_the_failure_budget_leaves_out_failures_reported_before(
    stack: Stack, workers: list[Worker]
) -> None:
    """20 users failing for good fit the budget (25 of 500); sent three times more, their 60
    repeated failures would not (each worker sees about half of 80): repeats are not judged."""
    broken = asyncio.run(seed(stack, 20, prefix="known-bad-", problem_ratio=1.0))
    before = answered(stack)
    asyncio.run(produce_requests(stack, [request_value(u, run_id="first") for u in broken]))
    wait_until(lambda: answered(stack) == before + 20, 60, "the first failures answered")
    for again in range(3):
        asyncio.run(
            produce_requests(stack, [request_value(u, run_id=f"again-{again}") for u in broken])
        )
    wait_until(lambda: answered(stack) == before + 80, 60, "the repeats answered")
    assert not any(control(w)["paused"] for w in workers), control(workers[0])
    mine = [r.value["outcome"] for r in outcomes(stack) if r.value["user_id"] in set(broken)]
    assert mine == ["failed"] * 80


def test_the_failure_budget_pauses_every_worker_on_a_batch_of_broken_users(
    stack: Stack, workers: list[Worker]
) -> None:
    broken = asyncio.run(seed(stack, 4_000, prefix="broken-", problem_ratio=1.0))
    before = answered(stack)
    asyncio.run(
        produce_requests(stack, [request_value(user, run_id="bad-wave") for user in broken])
    )
    wait_until(lambda: all(control(w)["paused"] for w in workers), 60, "auto-paused")
    state = control(workers[0])
    assert state["auto"] and "failure budget 5%/500 spent" in state["reason"]
    assert state["by"].startswith("auto: ")
    time.sleep(3)
    settled = answered(stack)
    assert settled - before < len(broken), "the whole broken batch was answered: no pause"
    time.sleep(3)
    assert answered(stack) == settled, "outcomes were published while auto-paused"
    assert "failure budget" in migrator(stack, "control", "status")
    # The pause is the topic's: a worker started now comes up paused and answers nothing.
    # Its HTTP answers before its control watcher has read the topic to the end (until then
    # `worker_paused` says false: not applied yet, and the worker admits nothing either); the
    # API promises the pause applied within 2 s, given 10 here (CI on 27fb983 asked at once).
    workers[1].stop()
    workers[1].start()
    wait_until(lambda: control(workers[1])["worker_paused"], 10, "the restarted worker paused")
    assert answered(stack) == settled, "a restarted worker answered before it paused"
    time.sleep(5)
    assert answered(stack) == settled, "a restarted worker answered while paused"
