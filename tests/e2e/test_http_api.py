"""The HTTP API against its own OpenAPI document, on a live worker: schemathesis generates
requests from /openapi.json (valid and invalid bodies, ids, query values) and every answer must
be no 5xx, have a documented status code and match its documented schema.

Driven through schemathesis's Python API (its pytest plugin does not support pytest 9 yet).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from harness import ADMIN_TOKEN, Stack, Worker, seed
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

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
