"""A wrong run cancelled on the real stack, two workers of one app id, the way an operator works:

pause, a wrong `enqueue --run … --execute`, the cancel planned then executed, resume: every
request of the run gets exactly one `failed`/`cancelled` answer and none of its users is touched
(PostgreSQL, Redis), while another run queued behind it and a request of the run published after
the cancel are migrated, and the failure budget stays quiet; `replay --code cancelled` then
brings the cancelled requests back and they migrate. And over HTTP, without a pause: a run
drained slowly under a throttle is cancelled mid-way; what was answered stays answered, the rest
is cancelled; a second cancel has nothing left (409).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import two_workers
from harness import (
    ADMIN_TOKEN,
    Read,
    Stack,
    Worker,
    read_all,
    seed,
)
from two_workers import API, control, leave_running, run, start_two, wait_until

from agents.stores.redis_mirror import user_key
from streams import topics
from streams.connections import opened

APP_ID = f"e2e-cancel-{uuid.uuid4().hex[:6]}"
# A failure budget the cancelled answers would spend many times over, were they judged.
WORKER_ENV = {"MIGRATOR_BATCH_SIZE": "200", "MIGRATOR_FAILURE_BUDGET": "5%/500"}


@pytest.fixture(scope="module")
def workers(stack: Stack) -> Iterator[list[Worker]]:
    running = start_two(stack, APP_ID, WORKER_ENV)
    yield running
    for worker in running:
        worker.stop()


@pytest.fixture(autouse=True)
def running_unthrottled(workers: list[Worker]) -> Iterator[None]:
    """Each test leaves the cluster running and unthrottled, whatever happened."""
    yield
    leave_running(workers)


def migrator(stack: Stack, *args: str) -> str:
    return two_workers.migrator(stack, APP_ID, *args)


def outcomes_of(stack: Stack, users: list[str]) -> dict[str, list[Read]]:
    """Every outcome of these users, by user, in the order they were given (the three topics
    are read side by side: their records come interleaved in no particular order)."""
    wanted = set(users)
    found: dict[str, list[Read]] = {}
    for read in asyncio.run(read_all(stack, *topics.OUTCOME_TOPICS.values())):
        if read.value["user_id"] in wanted:
            found.setdefault(read.value["user_id"], []).append(read)
    for reads in found.values():
        reads.sort(key=lambda read: (read.value["processed_at"], read.value["attempt"]))
    return found


def answered(stack: Stack, users: list[str], per_user: int = 1) -> bool:
    found = outcomes_of(stack, users)
    return len(found) == len(users) and all(len(o) >= per_user for o in found.values())


async def legacy_rows(stack: Stack, users: list[str]) -> dict[str, tuple[Any, ...]]:
    async with opened(stack.settings) as (pool, _):
        rows = await pool.fetch(
            "SELECT user_id, status, current_step, completed_steps, answers::text, updated_at"
            " FROM legacy_onboarding_status WHERE user_id = ANY($1::text[])",
            users,
        )
    return {row["user_id"]: tuple(row) for row in rows}


async def touched(stack: Stack, users: list[str]) -> dict[str, int]:
    """What PostgreSQL and Redis hold of these users besides their legacy rows."""
    async with opened(stack.settings) as (pool, client):
        sessions = await pool.fetchval(
            "SELECT count(*) FROM onboarding_sessions WHERE user_id = ANY($1::text[])", users
        )
        ledger = await pool.fetchval(
            "SELECT count(*) FROM migration_requests WHERE user_id = ANY($1::text[])", users
        )
        other_answers = await pool.fetchval(
            "SELECT count(*) FROM onboarding_migration_log WHERE user_id = ANY($1::text[])"
            " AND (outcome <> 'failed' OR error_code IS DISTINCT FROM 'cancelled')",
            users,
        )
        keys = sum([await client.exists(user_key(user)) for user in users])
    return {
        "sessions": int(sessions),
        "ledger": int(ledger),
        "other_answers": int(other_answers),
        "redis_keys": keys,
    }


def test_a_wrong_run_cancelled_while_paused_touches_no_user_and_a_replay_brings_it_back(
    stack: Stack, workers: list[Worker], tmp_path: Path
) -> None:
    wrong = asyncio.run(seed(stack, 1_500, prefix="wrong-"))
    right = asyncio.run(seed(stack, 50, prefix="right-"))
    [late] = asyncio.run(seed(stack, 1, prefix="late-"))
    before = asyncio.run(legacy_rows(stack, wrong))
    ids = tmp_path / "wrong.txt"
    ids.write_text("\n".join(wrong) + "\n")

    migrator(stack, "control", "pause", "--reason", "e2e: wrong run", "--by", "e2e", "--wait")
    migrator(stack, "enqueue", "--run", "wrong-wave", "--file", str(ids), "--execute")
    migrator(stack, "enqueue", "--run", "right-wave", "--ids", ",".join(right), "--execute")

    plan = migrator(stack, "runs", "cancel", "wrong-wave")
    assert "run wrong-wave: waiting" in plan and "unanswered  1500:" in plan, plan
    assert "backlog     1550 request record(s)" in plan, plan
    assert "cluster     paused since" in plan and "nothing was written" in plan, plan
    # The plan wrote nothing: the run waits, shown as paused while the cluster is.
    assert run(workers[0], "wrong-wave")["state"] == "paused"

    refused, body = workers[0].request("POST", f"{API}/runs/no-such-run/cancel", token=ADMIN_TOKEN)
    assert refused == 404 and "no run named" in body["error"]
    unauthorized, _ = workers[0].request("POST", f"{API}/runs/wrong-wave/cancel")
    assert unauthorized == 401

    done = migrator(
        stack,
        "runs",
        "cancel",
        "wrong-wave",
        "--reason",
        "wrong cohort",
        "--by",
        "e2e",
        "--execute",
    )
    cancelled_at = time.monotonic()
    assert "run wrong-wave cancelled at" in done and "once it resumes" in done, done
    wait_until(
        lambda: all(run(w, "wrong-wave")["state"] == "cancelled" for w in workers),
        2,
        "every worker knows the run is cancelled",
        0.05,
    )
    print(f"both workers knew of the cancel {time.monotonic() - cancelled_at:.2f} s after it")
    figures = run(workers[1], "wrong-wave")
    assert (figures["cancelled_by"], figures["cancel_reason"]) == ("e2e", "wrong cohort")
    shown = migrator(stack, "runs", "show", "wrong-wave")
    assert "run wrong-wave: cancelled" in shown and "by e2e: wrong cohort" in shown, shown

    # Published after the cancel: processed as usual, in the cancelled run.
    migrator(stack, "enqueue", "--run", "wrong-wave", "--ids", late, "--execute")
    time.sleep(2)
    assert not outcomes_of(stack, [*wrong, *right, late]), "answered while paused"

    resumed_at = time.monotonic()
    migrator(stack, "control", "resume", "--by", "e2e", "--wait")
    wait_until(lambda: answered(stack, [*wrong, *right, late]), 120, "every request answered", 1)
    print(f"1,551 requests answered {time.monotonic() - resumed_at:.1f} s after the resume")

    found = outcomes_of(stack, [*wrong, *right, late])
    for user in wrong:
        [only] = found[user]  # exactly one answer each
        assert only.topic == topics.FAILED, (user, only.value)
        error = only.value["error"]
        assert error["code"] == "cancelled" and error["retryable"], error
        assert (
            "run wrong-wave was cancelled" in error["message"]
            and "wrong cohort" in error["message"]
        )
        assert only.headers["migrator-error-code"] == b"cancelled"
        assert only.headers["migrator-run-id"] == b"wrong-wave"
        assert only.value["request"]["user_id"] == user  # what a replay publishes again
    for user in [*right, late]:
        [only] = found[user]
        assert only.value["outcome"] == "migrated", only.value
    assert asyncio.run(legacy_rows(stack, wrong)) == before, "a legacy row was changed"
    assert asyncio.run(touched(stack, wrong)) == {
        "sessions": 0,
        "ledger": 0,
        "other_answers": 0,
        "redis_keys": 0,
    }
    state = control(workers[0])
    assert not state["paused"] and state["auto_pauses"] == 0, state  # the budget stayed quiet
    assert control(workers[1])["auto_pauses"] == 0
    figures = run(workers[0], "wrong-wave")
    assert figures["state"] == "cancelled" and figures["requested"] == 1_501
    assert figures["failed_by_code"] == {"cancelled": 1_500} and figures["migrated"] == 1
    assert workers[1].stats()["failed_by_code"]["cancelled"] == 1_500
    assert "nothing left to cancel" in migrator(stack, "runs", "cancel", "wrong-wave")

    replayed_at = time.monotonic()
    replay = migrator(stack, "replay", "--code", "cancelled", "--execute")
    assert "cancelled 1500 (retryable)" in replay and "published 1500 request(s)" in replay, replay
    wait_until(lambda: answered(stack, wrong, per_user=2), 120, "every replay answered", 1)
    print(f"1,500 replays migrated in {time.monotonic() - replayed_at:.1f} s")
    found = outcomes_of(stack, wrong)
    for user in wrong:
        first, second = found[user]
        assert second.value["outcome"] == "migrated" and second.value["attempt"] == 2
        assert second.value["request_id"] == first.value["request_id"]
        assert second.value["run_id"] == "wrong-wave"  # a replay published after the cancel
    assert asyncio.run(touched(stack, wrong))["sessions"] == 1_500
    per_answer = Counter(
        (r.value["request_id"], r.value["attempt"]) for reads in found.values() for r in reads
    )
    assert set(per_answer.values()) == {1}, "a request was answered twice"
    assert not control(workers[0])["paused"]
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        assert client.exists(*[user_key(user) for user in wrong]) == 1_500
    finally:
        client.close()


def test_a_run_cancelled_over_http_while_running_keeps_what_was_answered(
    stack: Stack, workers: list[Worker], tmp_path: Path
) -> None:
    users = asyncio.run(seed(stack, 2_000, prefix="slow-"))
    ids = tmp_path / "slow.txt"
    ids.write_text("\n".join(users) + "\n")
    migrator(stack, "control", "throttle", "--rate", "100")
    wait_until(lambda: all(control(w)["throttle_per_s"] == 100 for w in workers), 2, "throttled")
    migrator(stack, "enqueue", "--run", "slow-wave", "--file", str(ids), "--execute")
    wait_until(lambda: run(workers[0], "slow-wave")["done"] >= 100, 60, "the run moves", 0.2)

    status, answer = workers[1].request(
        "POST",
        f"{API}/runs/slow-wave/cancel",
        body={"reason": "too slow", "by": "e2e-http"},
        token=ADMIN_TOKEN,
    )
    assert status == 202, answer
    assert answer["run"]["state"] == "cancelled" and answer["run"]["cancelled_by"] == "e2e-http"
    assert 0 < answer["unanswered"] < 2_000 and answer["paused"] is False
    assert set(answer["before"]) == {"0", "1", "2", "3"}  # every request partition's end
    migrator(stack, "control", "throttle", "--off")

    wait_until(lambda: answered(stack, users), 120, "every request of the run answered", 1)
    found = outcomes_of(stack, users)
    kinds = Counter(
        "cancelled" if reads[0].value["error"] else reads[0].value["outcome"]
        for reads in found.values()
    )
    assert all(len(reads) == 1 for reads in found.values()), "a request was answered twice"
    assert set(kinds) == {"migrated", "cancelled"}, kinds
    print(f"cancelled mid-run over HTTP: {dict(kinds)}")
    cancelled = [u for u, reads in found.items() if reads[0].value["error"]]
    migrated = [u for u in users if u not in set(cancelled)]
    assert asyncio.run(touched(stack, cancelled))["sessions"] == 0
    assert asyncio.run(touched(stack, migrated))["sessions"] == len(migrated)
    figures = run(workers[0], "slow-wave")
    assert figures["failed_by_code"] == {"cancelled": len(cancelled)}
    assert figures["migrated"] == len(migrated) and figures["remaining"] == 0

    status, answer = workers[0].request(
        "POST", f"{API}/runs/slow-wave/cancel", body={}, token=ADMIN_TOKEN
    )
    assert status == 409 and "nothing left to cancel" in answer["error"], answer
    assert not control(workers[0])["paused"]
