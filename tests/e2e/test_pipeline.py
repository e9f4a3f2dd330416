"""The worker as a process: requests in, exactly one outcome each out, counters and HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from harness import (
    ADMIN_TOKEN,
    Stack,
    Worker,
    cli,
    produce,
    produce_requests,
    read_all,
    reads_for,
    request_value,
    seed,
    wait_for_outcomes,
)
from prometheus_client.parser import text_string_to_metric_families

from streams import topics
from streams.connections import opened
from streams.stack.kafka import completed_requests, set_request_log

API = "/api/v1/onboarding/migration"


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[Worker]:
    running = Worker(stack, app_id=f"e2e-pipeline-{uuid.uuid4().hex[:6]}").start()
    yield running
    running.stop()


def only(reads: list[Any]) -> Any:
    assert len(reads) == 1, f"expected exactly one outcome, got {len(reads)}"
    return reads[0]


async def test_migrate_rollback_and_dry_run_end_to_end(stack: Stack, worker: Worker) -> None:
    users = await seed(stack, 60, prefix="pipe-")
    migrate_ids = await produce_requests(stack, [request_value(u) for u in users[:50]])
    outcomes = await wait_for_outcomes(stack, migrate_ids)
    for request_id in migrate_ids:
        read = only(outcomes[request_id])
        assert read.topic == topics.MIGRATED and read.value["outcome"] == "migrated"
        assert read.key == read.value["user_id"].encode()
        assert read.value["legacy_snapshot_sha256"]

    rollback_ids = await produce_requests(
        stack, [request_value(u, action="rollback") for u in users[:10]]
    )
    dry_ids = await produce_requests(stack, [request_value(u, dry_run=True) for u in users[50:]])
    outcomes = await wait_for_outcomes(stack, rollback_ids + dry_ids)
    for request_id in rollback_ids:
        read = only(outcomes[request_id])
        assert read.topic == topics.ROLLED_BACK and read.value["matches_snapshot"] is True
    for request_id in dry_ids:
        read = only(outcomes[request_id])
        assert read.value["dry_run"] is True
    async with opened(stack.settings) as (pool, _):
        sessions = await pool.fetchval(
            "SELECT count(*) FROM onboarding_sessions WHERE user_id = ANY($1)", users[50:]
        )
    assert sessions == 0  # dry runs wrote nothing but the audit log


async def test_poison_records_are_dead_lettered_once_with_original_bytes(
    stack: Stack, worker: Worker
) -> None:
    good = request_value("poison-ok")
    await seed(stack, 1, prefix="poison-ok-")
    good["user_id"] = "poison-ok-0000000"
    tag = uuid.uuid4().hex.encode()
    poison: list[tuple[bytes | None, bytes]] = [
        (b"p1-" + tag, b"\xff\xfe" + tag),
        (b"p2-" + tag, b"{not json " + tag),
        (
            b"p3-" + tag,
            json.dumps(
                {
                    "user_id": "u",
                    "request_id": str(uuid.uuid4()),
                    "action": "explode",
                    "tag": tag.decode(),
                }
            ).encode(),
        ),
        (b"p4-" + tag, json.dumps({"user_id": "u", "tag": tag.decode()}).encode()),
        (b"p5-" + tag, json.dumps({**request_value("someone-else"), "tag": tag.decode()}).encode()),
        (None, json.dumps({**request_value("nokey"), "tag": tag.decode()}).encode()),
        (
            b"p7-" + tag,
            json.dumps({**request_value("u"), "schema_version": 2, "tag": tag.decode()}).encode(),
        ),
        (b"p8-" + tag, tag + b" " * (1024 * 1024 + 10)),
    ]
    await produce(stack, [*poison, (good["user_id"].encode(), json.dumps(good).encode())])
    await wait_for_outcomes(stack, [good["request_id"]])
    letters = [
        r
        for r in await read_all(stack, topics.DEAD_LETTER)
        if tag in base64.b64decode(r.value["original"]["value_b64"] or "")
    ]
    expected = [
        "not_utf8",
        "not_json",
        "unknown_action",
        "invalid_request",
        "key_mismatch",
        "key_mismatch",
        "unsupported_schema_version",
        "too_large",
    ]
    assert len(letters) == len(poison)  # each once
    by_value = {base64.b64decode(r.value["original"]["value_b64"]): r for r in letters}
    for (key, value), reason in zip(poison, expected, strict=True):
        letter = by_value[value]
        original = letter.value["original"]
        assert letter.value["reason"] == reason
        assert (base64.b64decode(original["key_b64"]) if original["key_b64"] else None) == key
        assert letter.headers["migrator-error-code"] == reason.encode()
        assert letter.headers["migrator-original-topic"] == topics.REQUESTED.encode()
        assert int(letter.headers["migrator-original-offset"]) == original["offset"]


async def test_duplicate_request_ids_apply_once(stack: Stack, worker: Worker) -> None:
    [user] = await seed(stack, 1, prefix="dup-")
    value = request_value(user)
    await produce_requests(stack, [value, value, value])
    reads = await reads_for(stack, topics.MIGRATED, value["request_id"], until=3)
    assert [r.value["already_done"] for r in reads] == [False, True, True]
    assert len({r.value["session_id"] for r in reads}) == 1
    # A migrated outcome names its request in headers too, not only failures.
    assert {r.headers["migrator-request-id"] for r in reads} == {value["request_id"].encode()}


async def test_replay_republishes_failed_requests_after_the_data_is_fixed(
    stack: Stack, worker: Worker
) -> None:
    [user] = await seed(stack, 1, prefix="replay-")
    await _break_legacy_data(stack, user)
    value = request_value(user)
    failed = only(
        (await wait_for_outcomes(stack, await produce_requests(stack, [value])))[
            value["request_id"]
        ]
    )
    assert failed.topic == topics.FAILED
    assert failed.headers["migrator-error-code"] == b"unknown_legacy_step"
    assert failed.headers["migrator-retryable"] == b"false"
    assert failed.headers["migrator-request-id"] == value["request_id"].encode()
    assert failed.headers["migrator-run-id"] == b""

    plan = cli(stack, "replay", "--code", "unknown_legacy_step", "--ids", user)
    assert "replay: 1 user(s) whose latest request failed" in plan
    assert "unknown_legacy_step 1 (not retryable)" in plan and "WARNING" in plan
    assert "nothing was published" in plan
    async with opened(stack.settings) as (pool, _):
        await pool.execute(
            "UPDATE legacy_onboarding_status SET completed_steps = "
            "array_remove(completed_steps, 'legacy_wizard') WHERE user_id = $1",
            user,
        )
    cli(stack, "replay", "--code", "unknown_legacy_step", "--ids", user, "--execute")
    done = await reads_for(stack, topics.MIGRATED, value["request_id"])
    assert len(done) == 1 and done[0].value["attempt"] == 2


# The HTTP API on the module's worker, one concern per test. Each test seeds its own users and
# waits for the answers it caused, so none depends on another having run.


def test_health_answers_ok(worker: Worker) -> None:
    status, health = worker.get(f"{API}/health")
    assert status == 200 and health["ok"] is True
    assert health["worker"]["event_loop"] == "uvloop"  # MIGRATOR_EVENT_LOOP's default
    assert health["worker"]["gc_frozen_objects"] > 50_000  # settled once it had started


def test_admin_posts_refuse_a_missing_or_wrong_token_and_bad_bodies(worker: Worker) -> None:
    ids = {"user_ids": ["http-refused-0"]}
    status, body = worker.request("POST", f"{API}/migrate", body=ids)
    assert status == 401 and body["_headers"]["WWW-Authenticate"].startswith("Bearer")
    status, _ = worker.request("POST", f"{API}/migrate", body=ids, token="nope")
    assert status == 401
    status, body = worker.request("POST", f"{API}/migrate", raw=b"{", token=ADMIN_TOKEN)
    assert status == 400 and "JSON" in body["error"]
    status, body = worker.request(
        "POST", f"{API}/migrate", body={"user_ids": ["bad id"]}, token=ADMIN_TOKEN
    )
    assert status == 400
    status, body = worker.request(
        "POST", f"{API}/migrate", raw=b" " * (1024 * 1024 + 1), token=ADMIN_TOKEN
    )
    assert status == 413


async def _break_legacy_data(stack: Stack, user: str) -> None:
    """Give the user's legacy row a step the catalog does not know: its migration fails for good
    (unknown_legacy_step) until the data is fixed."""
    async with opened(stack.settings) as (pool, _):
        await pool.execute(
            "UPDATE legacy_onboarding_status SET completed_steps = completed_steps || "
            "'{legacy_wizard}' WHERE user_id = $1",
            user,
        )


async def _migrate_over_http(stack: Stack, worker: Worker, users: list[str]) -> None:
    status, body = worker.request(
        "POST", f"{API}/migrate", body={"user_ids": users}, token=ADMIN_TOKEN
    )
    assert status == 202 and body["count"] == len(users)
    await wait_for_outcomes(stack, body["request_ids"])


async def _roll_back_over_http(stack: Stack, worker: Worker, user: str) -> None:
    status, body = worker.request("POST", f"{API}/rollback/{user}", token=ADMIN_TOKEN)
    assert status == 202
    [rollback_id] = body["request_ids"]
    assert only((await wait_for_outcomes(stack, [rollback_id]))[rollback_id]).topic == (
        topics.ROLLED_BACK
    )


async def test_migrate_and_rollback_over_http_then_validate_each_state(
    stack: Stack, worker: Worker
) -> None:
    users = await seed(stack, 3, prefix="http-")
    await _migrate_over_http(stack, worker, users)
    await _roll_back_over_http(stack, worker, users[0])
    status, report = worker.get(f"{API}/validate/{users[1]}", token=ADMIN_TOKEN)
    assert status == 200 and report["ok"] is True and report["state"] == "migrated"
    status, report = worker.get(f"{API}/validate/{users[0]}", token=ADMIN_TOKEN)
    assert status == 200 and report["ok"] is True and report["state"] == "rolled_back"


def test_validate_refuses_a_bad_id_and_answers_404_for_an_unknown_user(worker: Worker) -> None:
    status, _ = worker.get(f"{API}/validate/not%20valid", token=ADMIN_TOKEN)
    assert status == 400
    status, body = worker.get(f"{API}/validate/nobody-{uuid.uuid4().hex}", token=ADMIN_TOKEN)
    assert status == 404 and "unknown user" in body["error"]


async def test_migrate_all_holds_out_rolled_back_and_failed_users(
    stack: Stack, worker: Worker
) -> None:
    user, broken = await seed(stack, 2, prefix="http-all-")
    await _migrate_over_http(stack, worker, [user])
    await _roll_back_over_http(stack, worker, user)
    await _break_legacy_data(stack, broken)
    await _migrate_over_http(stack, worker, [broken])  # fails for good: unknown_legacy_step
    async with opened(stack.settings) as (pool, _):
        unmigrated = await pool.fetchval(
            "SELECT count(*) FROM legacy_onboarding_status WHERE status <> 'migrated'"
        )
    status, body = worker.request(
        "POST", f"{API}/migrate", body={"all": True, "dry_run": True}, token=ADMIN_TOKEN
    )
    # The user rolled back above is held out of "all" unless include_rolled_back, the user whose
    # migration failed for good unless include_failed.
    assert status == 202 and body["held_out_rolled_back"] >= 1 and body["dry_run"] is True
    assert body["held_out_failed"] >= 1
    held = body["held_out_rolled_back"] + body["held_out_failed"]
    assert body["count"] + held == unmigrated
    await wait_for_outcomes(stack, body["request_ids"])
    status, body = worker.request(
        "POST",
        f"{API}/migrate",
        body={"all": True, "dry_run": True, "include_failed": True},
        token=ADMIN_TOKEN,
    )
    assert status == 202 and body["held_out_failed"] == 0
    await wait_for_outcomes(stack, body["request_ids"])


async def test_stats_and_progress_add_up(stack: Stack, worker: Worker) -> None:
    await _migrate_over_http(stack, worker, await seed(stack, 2, prefix="http-stats-"))
    stats = worker.stats()
    assert stats["requested"] == (
        stats["migrated"] + stats["rolled_back"] + stats["failed"] + stats["dry_run"]
    )
    status, progress = worker.get(f"{API}/progress")
    assert status == 200 and progress["legacy_total"] >= 2
    done = progress["migrated"] + progress["failed_for_good"] + progress["remaining"]
    assert done == progress["legacy_total"]


async def test_metrics_agree_with_stats_and_pass_promtool(stack: Stack, worker: Worker) -> None:
    await _migrate_over_http(stack, worker, await seed(stack, 2, prefix="http-metrics-"))
    stats = worker.stats()
    status, metrics = worker.get("/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    # One worker owns every partition: its partitions sum to the cluster's counters.
    assert sum(s.value for s in families["migrator_requested"].samples) == stats["requested"]
    assert families["migrator_legacy_users"].samples[0].value > 0
    assert {s.labels["dependency"] for s in families["migrator_dependency_up"].samples} == {
        "postgres",
        "redis",
        "kafka",
    }
    assert families["process_resident_memory_bytes"].samples[0].value > 0
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: `scripts/test` installs it (apt-get install prometheus)"
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=metrics, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_is_one_self_contained_page(worker: Worker) -> None:
    status, page = worker.get("/dashboard")
    assert status == 200 and "<html" in page and "http" not in page.split("<script>")[0].lower()


def test_admin_endpoints_answer_403_without_a_configured_token(stack: Stack) -> None:
    tokenless = Worker(stack, app_id=f"e2e-notoken-{uuid.uuid4().hex[:6]}", token=None).start()
    try:
        status, body = tokenless.request(
            "POST", f"{API}/migrate", body={"user_ids": ["x"]}, token="anything"
        )
        assert status == 403 and "MIGRATOR_ADMIN_TOKEN" in body["error"]
    finally:
        tokenless.stop()


async def test_single_requests_reach_the_broker_without_a_refused_produce(
    stack: Stack, worker: Worker
) -> None:
    """Requests one at a time, as an idle worker gets them: the broker accepts each outcome's
    records and its offset commit at the first try. A transactional produce is verified with the
    transaction coordinator (KIP-890), and so is the transaction's offset commit; with both in
    flight at once for one transactional id the broker refused the records (NOT_ENOUGH_REPLICAS),
    and the client sent them again 100 ms later: about one idle request in six answered in
    105-125 ms instead of 15-25. The broker's own request log (switched to DEBUG here) is read."""
    users = await seed(stack, 40, prefix="single-")
    bootstrap = stack.settings.kafka_bootstrap_servers
    log = stack.directory / "kafka.log"
    await asyncio.to_thread(set_request_log, bootstrap[0], "DEBUG")
    start = log.stat().st_size
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    request_ids = []
    try:
        for user in users:
            value = request_value(user)
            request_ids.append(value["request_id"])
            await producer.send_and_wait(
                topics.REQUESTED, json.dumps(value).encode(), user.encode()
            )
            await asyncio.sleep(0.25)  # past the worker's batch window: a transaction each
        outcomes = await wait_for_outcomes(stack, request_ids)
    finally:
        await producer.stop()
        await asyncio.to_thread(set_request_log, bootstrap[0], "WARN")
    assert all(len(reads) == 1 for reads in outcomes.values())
    with log.open("rb") as handle:
        handle.seek(start)
        lines = handle.read().decode(errors="replace").splitlines()
    mine = [r for r in completed_requests(lines) if _transactional_id(r).startswith(worker.app_id)]
    commits = [r for r in mine if r["requestHeader"]["requestApiKeyName"] == "END_TXN"]
    assert len(commits) >= len(users) // 2, f"{len(commits)} transactions in the request log"
    refused = [
        f"{r['requestHeader']['requestApiKeyName']} {errors}"
        for r in mine
        if r["requestHeader"]["requestApiKeyName"] in ("PRODUCE", "TXN_OFFSET_COMMIT")
        and (errors := sorted(_error_codes(r["response"]) - {0}))
    ]
    assert refused == [], f"{len(refused)} of {len(commits)} transactions: {refused[:5]}"


def _transactional_id(request: dict[str, Any]) -> str:
    body = request.get("request") or {}
    return str(body.get("transactionalId") or body.get("v3AndBelowTransactionalId") or "")


def _error_codes(value: Any) -> set[int]:
    """Every ``errorCode`` anywhere in a response."""
    if isinstance(value, dict):
        codes = {int(value["errorCode"])} if "errorCode" in value else set()
        for item in value.values():
            codes |= _error_codes(item)
        return codes
    if isinstance(value, list):
        return set().union(*(_error_codes(item) for item in value)) if value else set()
    return set()
