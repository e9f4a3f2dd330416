"""Two workers of one app id on a module's stack, and the helpers the run-control modules share
(`test_run_control`, `test_run_cancel`): the CLI against the stack, the run and control reads,
and waiting for a condition with a message."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest
from harness import ADMIN_TOKEN, MIGRATOR, ROOT, Stack, Worker

API = "/api/v1/onboarding/migration"


def start_two(stack: Stack, app_id: str, env: dict[str, str]) -> list[Worker]:
    """Two workers, once both own request partitions."""
    running = [Worker(stack, app_id=app_id, extra_env=env).start() for _ in range(2)]
    wait_until(lambda: _assigned(running), 60, "both workers own request partitions")
    return running


def leave_running(workers: list[Worker]) -> None:
    """Resume and lift any throttle, whatever a test did."""
    for path, body in (
        ("control/resume", {"by": "e2e cleanup"}),
        ("control/throttle", {"rate": None}),
    ):
        status, answer = workers[0].request("POST", f"{API}/{path}", body=body, token=ADMIN_TOKEN)
        assert status == 202, answer


def _assigned(workers: list[Worker]) -> bool:
    _, body = workers[0].get(f"{API}/workers")
    rows = body["workers"] if isinstance(body, dict) else []
    return len(rows) == 2 and all(row["partitions"] for row in rows)


def migrator(stack: Stack, app_id: str, *args: str) -> str:
    """``migrator ARGS`` against the stack and app id; its stdout (a failure fails the test)."""
    result = subprocess.run(
        [*MIGRATOR, *args],
        env={**stack.env, "MIGRATOR_APP_ID": app_id},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"migrator {' '.join(args)}: {result.stderr}"
    return result.stdout


def wait_until(condition: Any, timeout_s: float, what: str, every_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s} s: {what}", pytrace=False)
        time.sleep(every_s)


def run(worker: Worker, name: str) -> dict[str, Any]:
    status, body = worker.get(f"{API}/runs/{name}")
    assert status == 200, body
    return dict(body)


def control(worker: Worker) -> dict[str, Any]:
    status, body = worker.get(f"{API}/control")
    assert status == 200, body
    return dict(body)
