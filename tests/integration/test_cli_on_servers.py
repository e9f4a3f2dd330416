"""The operator's commands on real servers: plans that are what --execute publishes, rolled-back
cohorts held out, validate's three states, resync's plan, one line when a server is down."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from agents.batch_applier import BatchApplier
from agents.core.decide import Work
from agents.stores.postgres_batch import PostgresStore
from agents.stores.redis_mirror import RedisMirror
from schemas.events import MigrationRequest
from streams import topics
from streams.cli.kafka_io import read_records
from streams.settings import Settings


def env_of(settings: Settings, **changes: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "KAFKA_BROKER_URL": settings.kafka_broker_url,
        "REDIS_URL": settings.redis_url,
        **changes,
    }


def migrator(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


async def seed_users(pool: asyncpg.Pool, users: list[str]) -> None:
    await pool.executemany(
        "INSERT INTO legacy_onboarding_status (user_id, workspace_id, status, current_step,"
        " completed_steps, answers, updated_at) VALUES ($1, 'ws', 'in_progress', 'goals',"
        " '{account,profile}', '{}', now())",
        [(user,) for user in users],
    )


def plan_file(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header, *requests = (json.loads(line) for line in path.read_text().splitlines())
    return header, requests


async def test_everyone_holds_out_a_rolled_back_cohort_unless_asked(
    settings: Settings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    unique: str,
    tmp_path: Path,
) -> None:
    env = env_of(settings)
    # Other modules share the database and roll users back too: count from what they left.
    before = held_out(migrator(env, "enqueue", "--plan-out", str(tmp_path / "before.jsonl")).stdout)
    users = [f"hold-{unique}-{n}" for n in range(3)]
    await seed_users(pool, users)
    core = BatchApplier(PostgresStore(pool), RedisMirror(redis_client), app_id=f"cli-{unique}")
    back = users[1]
    requests = [
        MigrationRequest(request_id=uuid.uuid4(), user_id=back, action=a)
        for a in ("migrate", "rollback")
    ]
    await core.apply([Work(r, None, None) for r in requests])

    held = migrator(env, "enqueue", "--plan-out", str(tmp_path / "held.jsonl"))
    assert held.returncode == 0, held.stderr
    assert held_out(held.stdout) == before + 1
    _, planned = plan_file(tmp_path / "held.jsonl")
    assert back not in {r["user_id"] for r in planned}
    assert {users[0], users[2]} <= {r["user_id"] for r in planned}

    every = migrator(env, "enqueue", "--include-rolled-back", "--plan-out", str(tmp_path / "a"))
    assert every.returncode == 0 and "rolled back" not in every.stdout
    assert back in {r["user_id"] for r in plan_file(tmp_path / "a")[1]}


async def test_everyone_holds_out_users_failed_for_good_unless_asked(
    settings: Settings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    unique: str,
    tmp_path: Path,
) -> None:
    """Users whose migration failed for a reason only fixing their data cures are not sent again
    unchanged with everyone (they would fail again and trip the failure budget)."""
    env = env_of(settings)
    before = held_out(migrator(env, "enqueue", "--plan-out", str(tmp_path / "0")).stdout, FAILED)
    users = [f"bad-{unique}-{n}" for n in range(3)]
    await seed_users(pool, users)
    broken = users[0]
    await pool.execute(
        "UPDATE legacy_onboarding_status SET completed_steps = completed_steps || "
        "'{legacy_wizard}' WHERE user_id = $1",
        broken,
    )
    core = BatchApplier(PostgresStore(pool), RedisMirror(redis_client), app_id=f"cli-{unique}")
    request = MigrationRequest(request_id=uuid.uuid4(), user_id=broken)
    [failed] = (await core.apply([Work(request, None, None)])).outcomes
    assert failed.outcome == "failed" and failed.error is not None
    assert failed.error.code == "unknown_legacy_step"

    held = migrator(env, "enqueue", "--plan-out", str(tmp_path / "held.jsonl"))
    assert held.returncode == 0, held.stderr
    assert held_out(held.stdout, FAILED) == before + 1, held.stdout
    assert "migrator replay" in held.stdout
    planned = {r["user_id"] for r in plan_file(tmp_path / "held.jsonl")[1]}
    assert broken not in planned and {users[1], users[2]} <= planned

    every = migrator(env, "enqueue", "--include-failed", "--plan-out", str(tmp_path / "a"))
    assert every.returncode == 0 and "failed for good" not in every.stdout
    assert broken in {r["user_id"] for r in plan_file(tmp_path / "a")[1]}
    refused = migrator(env, "enqueue", "--ids", broken, "--include-failed")
    assert refused.returncode == 2 and "applies to everyone" in refused.stderr


def held_out(stdout: str, who: str = "rolled back") -> int:
    """How many users ``enqueue`` says it held out as ``who`` (0 when it says nothing)."""
    found = re.search(rf"held out: (\d+) users {who}", stdout)
    return int(found.group(1)) if found else 0


FAILED = "whose migration failed for good"


async def test_resume_wait_says_who_paused_everyone_again_and_why(
    settings: Settings, pool: asyncpg.Pool, unique: str
) -> None:
    """``control resume --wait`` once said only "1 of 1 worker(s) not taking requests" when the
    worker had auto-paused again 0.3 s after the resume."""
    import asyncio
    from datetime import UTC, datetime

    from agents.stores import postgres
    from streams.control_topic import pause_value, publish_control

    app_id = f"cli-resume-{unique}"
    env = env_of(settings, MIGRATOR_APP_ID=app_id)
    scoped = settings.model_copy(update={"app_id": app_id})
    worker = f"host:{unique}"
    resume = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "control", "resume", "--by", "ops", "--wait", "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        # The worker, as it reports while its failure budget is spent: still paused ...
        for report in range(8):
            await postgres.save_worker_status(
                pool,
                app_id=app_id,
                worker=worker,
                partitions=[0],
                lag={},
                in_flight=0,
                rss_bytes=None,
                started_at=datetime.now(UTC),
                paused=True,
            )
            await asyncio.sleep(0.5)
            if report == 2:
                # ... and it writes its pause again, after the operator's resume.
                await publish_control(
                    scoped,
                    "pause",
                    pause_value(
                        paused=True,
                        reason="failure budget 5%/500 spent: 26 of the last 26 failed",
                        by=f"auto: {worker}",
                        auto=True,
                    ),
                )
        _, stderr = resume.communicate(timeout=120)
    finally:
        resume.kill()
    assert resume.returncode == 2, stderr
    [line] = stderr.strip().splitlines()
    assert "resumed, but auto-paused since" in line and f"by auto: {worker}" in line, line
    assert "failure budget 5%/500 spent" in line and "1 of 1 worker(s) not taking requests" in line


async def test_enqueue_warns_when_the_cluster_is_paused(settings: Settings, unique: str) -> None:
    from streams.control_topic import pause_value, publish_control

    app_id = f"cli-paused-{unique}"
    scoped = settings.model_copy(update={"app_id": app_id})
    await publish_control(scoped, "pause", pause_value(paused=True, reason="looking", by="ops"))
    env = env_of(settings, MIGRATOR_APP_ID=app_id)
    done = migrator(env, "enqueue", "--ids", f"paused-{unique}", "--execute")
    assert done.returncode == 0, done.stderr
    assert "warning: the cluster is paused since" in done.stdout and "looking" in done.stdout
    assert "migrator control resume" in done.stdout and "published 1 request(s)" in done.stdout


async def test_a_plan_file_is_published_exactly(
    settings: Settings, unique: str, tmp_path: Path
) -> None:
    env = env_of(settings)
    ids = f"exact-{unique}-a,exact-{unique}-b"
    path = tmp_path / "plan.jsonl"
    planned = migrator(
        env, "enqueue", "--ids", ids, "--reason", "cohort 1", "--plan-out", str(path)
    )
    assert planned.returncode == 0, planned.stderr
    assert "nothing was published" in planned.stdout
    header, requests = plan_file(path)
    assert header["command"] == "enqueue" and header["count"] == 2
    shown = {r["request_id"] for r in requests}
    assert all(request_id in planned.stdout for request_id in shown)  # the sample shows them

    wrong = migrator(env, "replay", "--from-plan", str(path), "--execute")
    assert wrong.returncode == 2 and "not of `migrator replay`" in wrong.stderr
    done = migrator(env, "enqueue", "--from-plan", str(path), "--execute")
    assert done.returncode == 0, done.stderr
    assert "published 2 request(s)" in done.stdout

    published = [
        {**json.loads(record.value), "trace_id": dict(record.headers)["traceparent"][3:35].decode()}
        async for record in read_records(settings, topics.REQUESTED)
        if record.value is not None and unique.encode() in record.value
    ]
    # Each request as planned, and in its traceparent header the trace the plan gave it.
    assert sorted(published, key=lambda r: r["user_id"]) == sorted(
        requests, key=lambda r: r["user_id"]
    )
    assert all(f"trace_id={r['trace_id']}" in planned.stdout for r in requests)


async def test_rollback_plans_who_holds_a_session(
    settings: Settings, pool: asyncpg.Pool, unique: str
) -> None:
    await seed_users(pool, [f"rb-{unique}"])
    result = migrator(env_of(settings), "rollback", "--ids", f"rb-{unique},rb-{unique}-none")
    assert result.returncode == 0, result.stderr
    assert "selected: 2 given; 0 hold a migrated session now" in result.stdout
    assert "2 hold none and will answer failed/not_migrated" in result.stdout
    assert "nothing was published" in result.stdout


async def test_validate_and_resync_on_the_command_line(
    settings: Settings, pool: asyncpg.Pool, unique: str
) -> None:
    user = f"val-{unique}"
    await seed_users(pool, [user])
    env = env_of(settings)
    fresh = migrator(env, "validate", user)
    assert fresh.returncode == 0 and f"{user}: never migrated, OK" in fresh.stdout
    unknown = migrator(env, "validate", f"nobody-{unique}")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert "unknown user" in unknown.stderr

    plan = migrator(env, "resync-redis")
    assert plan.returncode == 0 and "nothing was changed" in plan.stdout
    assert "session(s) to rewrite" in plan.stdout and "stale key(s) to remove" in plan.stdout
    one = migrator(env, "resync-redis", "--ids", user, "--execute")
    assert one.returncode == 0 and "rewrote 0 session(s)" in one.stdout


def test_a_server_down_is_one_line_while_the_others_answer(settings: Settings) -> None:
    no_redis = env_of(settings, REDIS_URL="redis://127.0.0.1:9/0")
    no_kafka = env_of(settings, KAFKA_BROKER_URL="kafka://127.0.0.1:9")
    for env, args, cause in (
        (no_redis, ["validate", "someone"], "Redis at redis://127.0.0.1:9/0"),
        (no_redis, ["resync-redis"], "Redis at redis://127.0.0.1:9/0"),
        (no_kafka, ["enqueue", "--ids", "someone", "--execute"], "Kafka at kafka://127.0.0.1:9"),
        (no_kafka, ["replay"], "Kafka at kafka://127.0.0.1:9"),
    ):
        result = migrator(env, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and cause in result.stderr, (args, result.stderr)


async def test_runs_cancel_plans_then_writes_the_cancel_every_worker_reads(
    settings: Settings, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
) -> None:
    """No worker runs here: the requests stay queued, and the command's own effects are what
    is checked (the plan writes nothing; --execute writes one record with the topic's end
    offsets; a finished run has nothing left; an unknown run is one line). The workers' side
    is the end-to-end test's (tests/e2e/test_run_cancel.py)."""
    from datetime import UTC, datetime

    from agents.stores.runs import record_run
    from streams.control_topic import read_control

    app_id = f"cli-cancel-{unique}"
    env = env_of(settings, MIGRATOR_APP_ID=app_id)
    scoped = settings.model_copy(update={"app_id": app_id})
    name = f"wrong-{unique}"

    unknown = migrator(env, "runs", "cancel", f"nope-{unique}", "--execute")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1, unknown.stderr
    assert f"no run named 'nope-{unique}'" in unknown.stderr

    users = [f"cancel-{unique}-{n}" for n in range(3)]
    await seed_users(pool, users)
    enqueued = migrator(env, "enqueue", "--run", name, "--ids", ",".join(users), "--execute")
    assert enqueued.returncode == 0, enqueued.stderr

    plan = migrator(env, "runs", "cancel", name)
    assert plan.returncode == 0, plan.stderr
    assert f"run {name}: waiting" in plan.stdout and "unanswered  3:" in plan.stdout
    assert "touching no user" in plan.stdout
    assert f"nothing was written: add --execute to cancel run {name}" in plan.stdout
    assert (await read_control(scoped)).cancels == {}
    assert f"run {name}: waiting" in migrator(env, "runs", "show", name).stdout

    done = migrator(
        env, "runs", "cancel", name, "--reason", "wrong ids", "--by", "ops", "--execute"
    )
    assert done.returncode == 0, done.stderr
    assert f"run {name} cancelled at" in done.stdout and f"key cancel:{name}" in done.stdout
    cancel = (await read_control(scoped)).cancels[name]
    assert (cancel.by, cancel.reason) == ("ops", "wrong ids")
    # Every request of the run was in the topic before the cancel: all of them are covered.
    positions = [
        (record.partition, record.offset)
        async for record in read_records(settings, topics.REQUESTED)
        if record.value is not None and json.loads(record.value).get("run_id") == name
    ]
    assert len(positions) == 3 and all(cancel.covers(p, o) for p, o in positions)
    shown = migrator(env, "runs", "show", name)
    assert f"run {name}: cancelled" in shown.stdout, shown.stdout
    assert f"cancelled   {cancel.at} by ops: wrong ids" in shown.stdout
    listed = json.loads(migrator(env, "runs", "--json").stdout)
    [mine] = [run for run in listed if run["run_id"] == name]
    assert (mine["state"], mine["cancelled_by"]) == ("cancelled", "ops")

    # A run whose requests are all answered has nothing left: nothing is written.
    finished = f"done-{unique}"
    user = f"cancel-{unique}-done"
    await seed_users(pool, [user])
    core = BatchApplier(PostgresStore(pool), RedisMirror(redis_client), app_id=app_id)
    request = MigrationRequest(request_id=uuid.uuid4(), user_id=user, run_id=finished)
    await record_run(
        pool,
        finished,
        action="migrate",
        count=1,
        created_by="t",
        selection={},
        now=datetime.now(UTC),
    )
    await core.apply([Work(request, None, None)])
    nothing = migrator(env, "runs", "cancel", finished, "--execute")
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing left to cancel" in nothing.stdout and "nothing was written" in nothing.stdout
    assert finished not in (await read_control(scoped)).cancels
