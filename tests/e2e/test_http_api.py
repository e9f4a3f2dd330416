"""The HTTP API against its own OpenAPI document, on a live worker: schemathesis generates
requests from /openapi.json (valid and invalid bodies, ids, query values) and every answer must
be no 5xx, have a documented status code and match its documented schema.

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

from streams import topics

EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[Worker]:
    running = Worker(stack, app_id=f"e2e-api-{uuid.uuid4().hex[:6]}").start()
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
