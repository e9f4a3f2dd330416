"""Run events and hooks on the real stack, two workers of one app id, both with the same hooks
directory: a consumer of `user-migration-runs` reads a run's life (held by a pause, throttled,
resumed, started, finished with its figures), a cancelled run's cancel and end, and an
auto-pause with the failure budget's figures; each event once, although both workers see
everything. The `on-auto-pause` hook runs once per auto-pause with the event on its standard
input; a failing `on-run-finished` is one log line. Then the leading worker is killed: the
other takes over, and the resume after the auto-pause is published once, its hook too; a
verification recorded (twice) the way `migrator verify` will is published once, hooked once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import two_workers
from harness import Stack, Worker, produce_requests, read_all, request_value, seed
from two_workers import run, start_two, wait_until

from agents.stores import run_events as run_events_store
from streams import topics
from streams.connections import opened

APP_ID = f"e2e-events-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def hooks(stack: Stack) -> Path:
    directory = stack.directory / "hooks"
    directory.mkdir()
    for name, body in {
        # Appends one line per call: the event id, the kind of auto-pause, then the JSON it read.
        "on-auto-pause": 'printf "%s %s " "$MIGRATOR_EVENT_ID" "$MIGRATOR_AUTO_PAUSE_KIND" '
        '>> "$PWD/auto-pause.log"\ncat >> "$PWD/auto-pause.log"\n',
        "on-run-resumed": 'echo "$MIGRATOR_EVENT_ID" >> "$PWD/resumed.log"\n',
        "on-run-verified": 'echo "$MIGRATOR_EVENT_ID" >> "$PWD/verified.log"\n',
        "on-run-finished": 'echo "pager: no route to $MIGRATOR_RUN_ID" >&2\nexit 1\n',
    }.items():
        path = directory / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    return directory


@pytest.fixture(scope="module")
def workers(stack: Stack, hooks: Path) -> Iterator[list[Worker]]:
    env = {
        "MIGRATOR_BATCH_SIZE": "100",
        "MIGRATOR_FAILURE_BUDGET": "5%/100",
        "MIGRATOR_HOOKS_DIR": str(hooks),
        "MIGRATOR_HOOK_TIMEOUT_S": "5",
        "MIGRATOR_REVALIDATE_PER_S": "0",
    }
    running = start_two(stack, APP_ID, env)
    yield running
    for worker in running:
        worker.stop()


def migrator(stack: Stack, *args: str) -> str:
    return two_workers.migrator(stack, APP_ID, *args)


def events(stack: Stack) -> list[dict[str, Any]]:
    return [r.value for r in asyncio.run(read_all(stack, topics.RUN_EVENTS, idle_s=0.5))]


def wait_for_event(stack: Stack, what: str, test: Any, timeout_s: float = 30) -> None:
    wait_until(lambda: any(test(e) for e in events(stack)), timeout_s, what, every_s=0.5)


def test_a_consumer_reads_each_run_s_life_once_and_hooks_fire_once(
    stack: Stack, workers: list[Worker], hooks: Path
) -> None:
    asyncio.run(seed(stack, 300, prefix="life-"))
    # Held by a pause from the start, a run and a wrong run are enqueued; the wrong one is
    # cancelled, the cluster throttled and resumed.
    migrator(stack, "control", "pause", "--reason", "e2e: before the wave", "--by", "e2e")
    wait_for_event(stack, "the pause", lambda e: e["event"] == "paused")
    migrator(stack, "enqueue", "--run", "life", "--ids", _ids(0, 200), "--execute")
    migrator(stack, "enqueue", "--run", "wrong", "--ids", _ids(200, 300), "--execute")
    migrator(stack, "runs", "cancel", "wrong", "--reason", "e2e: wrong cohort", "--execute")
    migrator(stack, "control", "throttle", "--rate", "400", "--by", "e2e")
    migrator(stack, "control", "resume", "--by", "e2e")
    wait_until(lambda: run(workers[0], "life")["state"] == "finished", 60, "life finished")
    wait_for_event(stack, "life's finished event", lambda e: e["event_id"] == "finished:life:200")
    wait_for_event(stack, "wrong's end", lambda e: e["event_id"] == "finished:wrong:100")
    migrator(stack, "control", "throttle", "--off", "--by", "e2e")

    seen = events(stack)
    assert [n for n, c in Counter(e["event_id"] for e in seen).items() if c > 1] == []
    life = [e for e in seen if "life" in e["runs"]]
    assert [e["event"] for e in life] == ["throttled", "resumed", "started", "finished"], life
    finished = life[-1]
    assert finished["figures"]["migrated"] == 200 and finished["figures"]["failed"] == 0
    assert finished["figures"]["requested"] == 200 and finished["figures"]["duration_s"] >= 0
    throttled = life[0]
    assert (throttled["throttle_per_s"], throttled["by"]) == (400.0, "e2e")
    paused = next(e for e in seen if e["event"] == "paused")
    assert (paused["reason"], paused["by"]) == ("e2e: before the wave", "e2e")
    wrong = [e["event"] for e in seen if e["run_id"] == "wrong"]
    assert wrong == ["cancelled", "started", "finished"], wrong
    cancelled = next(e for e in seen if e["event"] == "cancelled")
    assert cancelled["reason"] == "e2e: wrong cohort"
    assert {e["published_by"].rsplit(":", 1)[1] for e in seen} <= {_pid(w) for w in workers}

    # A failing hook: one line in the log of the worker that ran it, never a traceback.
    wait_until(
        lambda: (
            "hook on-run-finished for event finished:life:200 failed: exit 1 after"
            in "".join(w.log_tail(100_000) for w in workers)
        ),
        20,
        "the failed hook's line",
    )
    logs = "".join(w.log_tail(100_000) for w in workers)
    line = next(x for x in logs.splitlines() if "finished:life:200 failed" in x)
    assert line.rstrip().endswith("pager: no route to life"), line
    wait_until(
        lambda: (
            "finished:wrong:100 failed: exit 1" in "".join(w.log_tail(100_000) for w in workers)
        ),
        20,
        "the next hook ran too",
    )
    assert "Traceback" not in logs and "] hooks: " not in logs, logs[-3000:]

    # A bad wave trips the failure budget: an auto-pause with the budget's figures, its hook
    # once per auto-pause record (each worker may pause before it sees the other's record).
    broken = asyncio.run(seed(stack, 60, prefix="broken-", problem_ratio=1.0))
    asyncio.run(produce_requests(stack, [request_value(u, run_id="bad") for u in broken]))
    wait_for_event(stack, "the auto-pause", lambda e: e["event"] == "auto_paused")
    auto = [e for e in events(stack) if e["event"] == "auto_paused"]
    figures = auto[0]["auto_pause"]
    assert figures["kind"] == "failure_budget" and figures["budget"] == "5%/100", figures
    assert figures["failed"] > figures["allowed"] == 5 and auto[0]["by"].startswith("auto: ")
    wait_until(lambda: _hook_calls(hooks) >= len(auto), 20, "the on-auto-pause hook ran")
    time.sleep(3)  # a second run of it would have happened by now
    calls = (hooks / "auto-pause.log").read_text().splitlines()
    assert sorted(c.split(" ", 2)[0] for c in calls) == sorted(e["event_id"] for e in auto)
    assert all(c.split(" ", 2)[1] == "failure_budget" for c in calls)
    assert json.loads(calls[0].split(" ", 2)[2])["event"] == "auto_paused"  # stdin: the event

    # The leader dies; the other worker leads, and the resume is published once, hooked once.
    leader = next(w for w in workers if "this worker leads" in w.log_tail(100_000))
    survivor = next(w for w in workers if w is not leader)
    leader.kill(signal.SIGKILL)
    migrator(stack, "control", "resume", "--by", "e2e", "--reason", "e2e: looked")
    wait_for_event(
        stack, "the resume after the kill", lambda e: e.get("reason") == "e2e: looked", 40
    )
    resumed = [e for e in events(stack) if e.get("reason") == "e2e: looked"]
    assert len(resumed) == 1 and resumed[0]["published_by"].endswith(f":{_pid(survivor)}")
    wait_until(lambda: resumed[0]["event_id"] in _lines(hooks / "resumed.log"), 20, "resumed hook")
    time.sleep(2)
    ran = Counter(_lines(hooks / "resumed.log"))
    assert set(ran.values()) == {1}, ran

    # `migrator verify --run` (another branch) records its end; the leader publishes it.
    async def verified_twice() -> None:
        async with opened(stack.settings) as (pool, _):
            for _ in range(2):  # the same verification recorded twice is one event
                await run_events_store.record_verified(
                    pool,
                    APP_ID,
                    run_id="life",
                    verification_id="v-1",
                    at=datetime.now(UTC),
                    by="e2e",
                    report={"checked": 200, "findings": 0},
                )

    asyncio.run(verified_twice())
    wait_for_event(stack, "verified", lambda e: e["event_id"] == "verified:life:v-1")
    wait_until(lambda: _lines(hooks / "verified.log") == ["verified:life:v-1"], 20, "hooked")
    all_events = events(stack)
    assert len({e["event_id"] for e in all_events}) == len(all_events), "an event twice"
    verified = next(e for e in all_events if e["event"] == "verified")
    assert verified["verification"] == {"checked": 200, "findings": 0}


def _ids(start: int, stop: int) -> str:
    return ",".join(f"life-{n:07d}" for n in range(start, stop))


def _pid(worker: Worker) -> str:
    assert worker.process is not None
    return str(worker.process.pid)


def _hook_calls(directory: Path) -> int:
    return len(_lines(directory / "auto-pause.log"))


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
