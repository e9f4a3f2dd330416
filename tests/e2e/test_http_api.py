"""The HTTP API against its own OpenAPI document, on a live worker: schemathesis generates
requests from /openapi.json (valid and invalid bodies, ids, query values) and every answer must
be no 5xx, have a documented status code and match its documented schema. Then who may read
users' data: the read token or the admin token; aggregates stay open.

Driven through schemathesis's Python API (its pytest plugin does not support pytest 9 yet).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from harness import (
    ADMIN_TOKEN,
    READ_TOKEN,
    Stack,
    Worker,
    kill_server,
    read_all,
    restart_servers,
    seed,
    wait_for_outcomes,
)
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from agents.jobs.resync import resync_users
from agents.stores.redis_mirror import user_key
from streams import topics
from streams.connections import opened

EXAMPLES_PER_OPERATION = 25
API = "/api/v1/onboarding/migration"
RUN = "read-token-run"
WRONG_TOKEN = "e2e-wrong-token-0123456789"


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[Worker]:
    # The fuzzer's writes fail on purpose: the failure budget would pause the worker for the
    # tests that follow it.
    env = {"MIGRATOR_READ_TOKEN": READ_TOKEN, "MIGRATOR_FAILURE_BUDGET": "off"}
    running = Worker(stack, app_id=f"e2e-api-{uuid.uuid4().hex[:6]}", extra_env=env).start()
    yield running
    running.stop()


async def test_every_answer_is_documented_and_never_a_server_error(
    stack: Stack, worker: Worker
) -> None:
    await seed(stack, 5, prefix="api-")
    api = schemathesis.openapi.from_url(f"{worker.url}/openapi.json")
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    failures: list[str] = []
    statuses: list[int] = []
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def answers_as_documented(case: schemathesis.Case) -> None:
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, checks=checks, timeout=30
            )
            statuses.append(response.status_code)

        try:
            answers_as_documented()
        except Exception as exc:  # noqa: BLE001 - collected, all operations are run
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    # Not vacuous: many calls, answered both ways (accepted and refused input).
    assert len(statuses) >= 5 * len(operations)
    assert {200, 202} <= set(statuses) and 400 in statuses


def _call(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, str, Any]:
    """Status, content type and decoded JSON body (None if not JSON) of one HTTP call."""
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status, kind, raw = answer.status, answer.headers.get_content_type(), answer.read()
    except urllib.error.HTTPError as error:
        status, kind, raw = error.code, error.headers.get_content_type(), error.read()
    try:
        return status, kind, json.loads(raw)
    except ValueError:
        return status, kind, None


def test_unknown_paths_and_methods_answer_json_errors(worker: Worker) -> None:
    status, kind, body = _call(f"{worker.url}/api/v1/onboarding/migration/nope")
    assert (status, kind) == (404, "application/json") and "error" in body, body
    status, kind, body = _call(f"{worker.url}/api/v1/onboarding/migration/stats", "DELETE")
    assert (status, kind) == (405, "application/json") and "error" in body, body


def test_bad_input_that_once_slipped_through_is_refused_with_a_message(worker: Worker) -> None:
    base = f"{worker.url}/api/v1/onboarding/migration"
    deep = b"[" * 5000 + b"]" * 5000
    status, _, body = _call(f"{base}/migrate", "POST", deep)
    assert status == 400 and "nested too deeply" in body["error"], body
    status, _, body = _call(f"{base}/control/throttle", "POST", b'{"rate": 5e-324}')
    assert status == 400 and "rate" in body["error"], body
    status, _, body = _call(f"{base}/stats?scope=everything")
    assert status == 400 and "scope" in body["error"], body
    status, _, _ = _call(f"{base}/stats?scope=cluster")
    assert status == 200


@pytest.fixture(scope="module")
async def people(stack: Stack, worker: Worker) -> tuple[str, str]:
    """A user migrated and a user whose migration failed for good, both in the run ``RUN``."""
    # Whatever the fuzzer left (a pause, a throttle) is lifted first.
    for verb, body in (("resume", {}), ("throttle", {"rate": None})):
        status, _ = worker.request("POST", f"{API}/control/{verb}", body=body, token=ADMIN_TOKEN)
        assert status == 202
    migrated, failed = await seed(stack, 2, prefix=f"read-{uuid.uuid4().hex[:6]}-")
    async with opened(stack.settings) as (pool, _):
        await pool.execute(
            "UPDATE legacy_onboarding_status SET completed_steps = completed_steps || "
            "'{legacy_wizard}' WHERE user_id = $1",
            failed,
        )
    status, body = worker.request(
        "POST",
        f"{API}/migrate",
        body={"user_ids": [migrated, failed], "run": RUN},
        token=ADMIN_TOKEN,
    )
    assert status == 202, body
    await wait_for_outcomes(stack, body["request_ids"])
    return migrated, failed


def test_reads_of_users_data_need_the_read_or_the_admin_token(
    worker: Worker, people: tuple[str, str]
) -> None:
    migrated, failed = people
    for path in (f"{API}/validate/{migrated}", f"{API}/runs/{RUN}/report?format=json"):
        status, body = worker.get(path)
        assert status == 401 and "read token" in body["error"], body
        assert body["_headers"]["WWW-Authenticate"].startswith("Bearer"), body
        status, body = worker.get(path, token=WRONG_TOKEN)
        assert status == 401 and body["error"] == "wrong bearer token", body
        assert body["_headers"]["WWW-Authenticate"].startswith("Bearer"), body
        for token in (READ_TOKEN, ADMIN_TOKEN):
            status, body = worker.get(path, token=token)
            assert status == 200, (path, body)
    status, report = worker.get(f"{API}/validate/{migrated}", token=READ_TOKEN)
    assert report["user_id"] == migrated and report["state"] == "migrated", report
    status, rows = worker.get(f"{API}/runs/{RUN}/report?format=json", token=READ_TOKEN)
    assert [row["user_id"] for row in rows] == [failed], rows
    status, csv_text = worker.get(f"{API}/runs/{RUN}/report", token=ADMIN_TOKEN)
    assert status == 200 and failed in csv_text, csv_text
    # Without the token, not even whether a user (or a run) exists is told.
    for path in (f"{API}/validate/nobody-{uuid.uuid4().hex}", f"{API}/runs/no-such-run/report"):
        assert worker.get(path)[0] == 401, path
        assert worker.get(path, token=READ_TOKEN)[0] == 404, path
    # The read token reads; it does not write.
    status, body = worker.request(
        "POST", f"{API}/migrate", body={"user_ids": [migrated], "dry_run": True}, token=READ_TOKEN
    )
    assert status == 401, body


def test_open_answers_list_users_only_for_the_read_or_the_admin_token(
    worker: Worker, people: tuple[str, str]
) -> None:
    _, failed = people
    for name in ("failures", "revalidation", "audit", "stats"):
        status, body = worker.get(f"{API}/{name}")
        flagged = body["revalidation"] if name == "stats" else body
        assert status == 200 and flagged["user_ids_withheld"] is True, (name, body)
        assert failed not in json.dumps(body), (name, body)
        status, body = worker.get(f"{API}/{name}", token=WRONG_TOKEN)
        assert status == 401 and body["_headers"]["WWW-Authenticate"].startswith("Bearer")
    hidden = _failures(worker, None)
    assert hidden["user_ids_withheld"] is True
    by_code = {row["code"]: row for row in hidden["failures"]}
    assert by_code["unknown_legacy_step"]["users"] >= 1  # the aggregate stays open
    assert all(row["sample_user_ids"] is None for row in hidden["failures"])
    for token in (READ_TOKEN, ADMIN_TOKEN):
        shown = _failures(worker, token)
        assert shown["user_ids_withheld"] is False
        by_code = {row["code"]: row for row in shown["failures"]}
        assert failed in by_code["unknown_legacy_step"]["sample_user_ids"], shown
    for name in ("revalidation", "audit"):
        for token in (READ_TOKEN, ADMIN_TOKEN):
            status, shown = worker.get(f"{API}/{name}", token=token)
            assert status == 200 and shown["user_ids_withheld"] is False, (name, shown)
    status, hidden = worker.get(f"{API}/revalidation")
    assert hidden["latest_user_ids"] is None and isinstance(hidden["mismatches"], dict)
    assert all(row["user_id"] is None for row in hidden["drift"])
    status, audit = worker.get(f"{API}/audit")
    assert all(finding["user_id"] is None for finding in audit["findings"])
    status, stats = worker.get(f"{API}/stats")
    assert stats["revalidation"]["user_ids_withheld"] is True
    assert stats["revalidation"]["latest_user_ids"] is None and stats["failed"] >= 1
    status, stats = worker.get(f"{API}/stats", token=READ_TOKEN)
    assert stats["revalidation"]["user_ids_withheld"] is False
    assert isinstance(stats["revalidation"]["latest_user_ids"], dict)


def _failures(worker: Worker, token: str | None) -> dict[str, Any]:
    status, body = worker.get(f"{API}/failures", token=token)
    assert status == 200, body
    return dict(body)


def test_aggregates_stay_open_and_name_nobody(worker: Worker, people: tuple[str, str]) -> None:
    migrated, failed = people
    for path in (
        f"{API}/health",
        f"{API}/progress",
        f"{API}/stats?scope=local",
        f"{API}/workers",
        f"{API}/runs",
        f"{API}/runs/{RUN}",
        f"{API}/control",
        "/metrics",
        "/openapi.json",
        "/dashboard",
    ):
        status, body = worker.get(path)
        assert status == 200, (path, body)
        text = body if isinstance(body, str) else json.dumps(body)
        assert migrated not in text and failed not in text, path
    status, progress = worker.get(f"{API}/progress")
    assert progress["stats"].get("revalidation") is None
    status, run = worker.get(f"{API}/runs/{RUN}")
    assert run["failed_by_code"] == {"unknown_legacy_step": 1} and run["migrated"] == 1


async def test_validate_answers_503_while_a_writer_holds_the_user_past_the_wait(
    stack: Stack, worker: Worker, people: tuple[str, str]
) -> None:
    """A failed check is read again under the user's row lock; a writer that keeps the row
    longer than validate waits (10 s) gets a 503 naming it, never a false report or a 500."""
    migrated, _ = people
    async with opened(stack.settings) as (pool, client):
        await client.delete(user_key(migrated))  # a real mismatch, so validate confirms it
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT 1 FROM legacy_onboarding_status WHERE user_id = $1 FOR UPDATE", migrated
            )
            started = time.monotonic()
            status, body = await asyncio.to_thread(
                worker.get, f"{API}/validate/{migrated}", token=READ_TOKEN, timeout=30
            )
            waited = time.monotonic() - started
        assert status == 503 and "is being written" in body["error"], body
        assert 9 < waited < 20, waited
        status, report = worker.get(f"{API}/validate/{migrated}", token=READ_TOKEN)
        assert status == 200 and report["state"] == "migrated", report
        failed = [c["name"] for c in report["checks"] if not c["ok"]]
        assert "session_in_redis" in failed, report
        assert await resync_users(pool, client, [migrated]) == 1  # as an operator would


def test_reads_of_users_data_are_refused_when_no_token_is_configured(
    stack: Stack, worker: Worker, people: tuple[str, str]
) -> None:
    """A worker with neither token set serves no user's data (403 naming the setting), and
    its aggregates as before. It joins the module worker's group, as a second worker would."""
    migrated, _ = people
    bare = Worker(stack, app_id=worker.app_id, token=None).start()
    try:
        for token in (None, READ_TOKEN, ADMIN_TOKEN):
            for path in (f"{API}/validate/{migrated}", f"{API}/runs/{RUN}/report"):
                status, body = bare.get(path, token=token)
                assert status == 403 and "MIGRATOR_READ_TOKEN" in body["error"], (path, body)
        status, body = bare.get(f"{API}/failures")
        assert status == 200 and body["user_ids_withheld"] is True, body
        status, body = bare.get(f"{API}/failures", token=READ_TOKEN)
        assert status == 403 and "MIGRATOR_READ_TOKEN" in body["error"], body
        for path in (f"{API}/health", f"{API}/stats", f"{API}/progress", "/dashboard"):
            assert bare.get(path)[0] == 200, path
    finally:
        bare.stop()


async def test_a_write_while_kafka_is_down_answers_503_at_once_and_publishes_nothing(
    stack: Stack, worker: Worker
) -> None:
    """Writes once hung for as long as Kafka was away, then were published anyway: a client
    that had given up and retried doubled the work under new request ids. (Last in the module:
    it stops the stack's Kafka.)"""
    [user] = await seed(stack, 1, prefix="kafka-down-")
    base = f"{worker.url}/api/v1/onboarding/migration"
    body = json.dumps({"user_ids": [user], "dry_run": True, "run": "kafka-down"}).encode()
    # The fuzzing before may have spent the failure budget: running, so the last call is answered.
    status, _, resumed = _call(f"{base}/control/resume", "POST", b"{}")
    assert status == 202 and not resumed["paused"], resumed
    kill_server(stack, "kafka")
    try:
        started = time.monotonic()
        status, _, answer = _call(f"{base}/migrate", "POST", body)
        took = time.monotonic() - started
        pause_started = time.monotonic()
        paused, _, pause_answer = _call(f"{base}/control/pause", "POST", b'{"reason": "x"}')
        pause_took = time.monotonic() - pause_started
    finally:
        restart_servers(stack)
    assert status == 503 and "Kafka" in answer["error"], answer
    assert took < 15, f"answered after {took:.1f} s"
    assert paused == 503 and "Kafka" in pause_answer["error"], pause_answer
    assert pause_took < 15, f"the pause answered after {pause_took:.1f} s"
    # The refused call added nothing to its run ...
    status, _, _ = _call(f"{base}/runs/kafka-down")
    assert status == 404
    # ... and once Kafka is back, a call goes through, and only its request is ever read.
    status, _, accepted = _call(f"{base}/migrate", "POST", body)
    for _ in range(30):
        if status == 202:
            break
        await asyncio.sleep(2)  # the worker's clients reconnect
        status, _, accepted = _call(f"{base}/migrate", "POST", body)
    assert status == 202, accepted
    await wait_for_outcomes(stack, accepted["request_ids"])
    requested = [r for r in await read_all(stack, topics.REQUESTED) if r.value["user_id"] == user]
    assert [r.value["request_id"] for r in requested] == accepted["request_ids"]
    status, _, control = _call(f"{base}/control")
    assert status == 200 and not control["paused"], "the refused pause landed after all"
