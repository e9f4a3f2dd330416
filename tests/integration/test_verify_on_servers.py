"""``migrator verify`` on real servers: a clean cohort passes; every kind of corruption planted in
PostgreSQL and Redis is found with the kind of repair it needs; the repair plan changes nothing;
the executed repair fixes what is repairable (audited) and a re-run proves it, drift left alone;
a stopped verification resumes; a run says when it was verified; failures are one line."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from support.corruption import CORRUPTIONS, Corruption
from test_cli_on_servers import env_of, migrator

from agents.batch_applier import BatchApplier
from agents.core.decide import Work
from agents.jobs import verify
from agents.jobs.seed import SeedOptions, generate, write_rows
from agents.stores.postgres_batch import PostgresStore
from agents.stores.redis_mirror import RedisMirror
from agents.stores.run_events import unpublished
from agents.stores.runs import record_run
from schemas.events import MigrationRequest
from streams.settings import Settings

USERS = 90


async def cohort(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str, *, run_id: str
) -> list[str]:
    """USERS seeded and migrated in run ``run_id``; the last three rolled back."""
    prefix = f"vf-{unique}-"
    await write_rows(pool, generate(SeedOptions(users=USERS, prefix=prefix, seed=11)))
    users = [f"{prefix}{n:07d}" for n in range(USERS)]
    await record_run(
        pool,
        run_id,
        action="migrate",
        count=USERS,
        created_by="test",
        selection={"ids": USERS},
        now=datetime.now(UTC),
    )
    core = BatchApplier(PostgresStore(pool), RedisMirror(redis_client), app_id=f"vf-{unique}")
    works = [
        Work(MigrationRequest(request_id=uuid.uuid4(), user_id=u, run_id=run_id), 0, n, None)
        for n, u in enumerate(users)
    ]
    await core.apply(works)
    back = [
        Work(MigrationRequest(request_id=uuid.uuid4(), user_id=u, action="rollback"), 0, n, None)
        for n, u in enumerate(users[-3:], start=USERS)
    ]
    await core.apply(back)
    return users


def report(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text())
    return result


async def test_verify_finds_every_planted_corruption_and_repair_fixes_the_repairable(
    settings: Settings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    unique: str,
    tmp_path: Path,
) -> None:
    run_id = f"vf-{unique}"
    users = await cohort(pool, redis_client, unique, run_id=run_id)
    env = env_of(settings)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(users) + "\n")

    clean = migrator(env, "verify", "--file", str(ids), "--json", str(tmp_path / "clean.json"))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "OK: every check holds" in clean.stdout and "users/s" in clean.stdout
    assert report(tmp_path / "clean.json")["checked"] == USERS

    # One corruption of each kind, each on its own migrated user (manifests on completed ones).
    sessions = await pool.fetch(
        "SELECT user_id, session_id, status FROM onboarding_sessions"
        " WHERE user_id = ANY($1::text[]) ORDER BY user_id",
        users,
    )
    completed = [s for s in sessions if s["status"] == "completed"]
    others = [s for s in sessions if s["status"] != "completed"]
    planted: dict[str, Corruption] = {}
    for corruption in CORRUPTIONS:
        session = (completed if corruption.needs_manifest else others or completed).pop()
        await corruption.plant(pool, redis_client, session)
        planted[session["user_id"]] = corruption
    # A rolled-back user whose Redis pointer came back, one whose legacy row changed after.
    stale, drifted = users[-3], users[-2]
    await redis_client.set(f"onboarding:user:{stale}", str(uuid.uuid4()))
    await pool.execute(
        "UPDATE legacy_onboarding_status SET current_step = 'team' WHERE user_id = $1", drifted
    )
    expected = {user: c.expects for user, c in planted.items()}
    expected |= {stale: "redis", drifted: "drift"}

    found_path = tmp_path / "found.json"
    found = migrator(env, "verify", "--file", str(ids), "--json", str(found_path))
    assert found.returncode == 1, found.stdout + found.stderr
    assert "MISMATCHES" in found.stdout
    first = report(found_path)
    by_user = {entry["user_id"]: entry["findings"] for entry in first["users"]}
    assert set(by_user) == set(expected)  # every one found, nothing else
    for user, kind in expected.items():
        assert kind in {f["kind"] for f in by_user[user]}, (user, by_user[user])

    planned = migrator(env, "verify", "--rerun", str(found_path), "--repair")
    assert planned.returncode == 1 and "nothing was changed" in planned.stdout
    again = migrator(env, "verify", "--rerun", str(found_path), "--json", str(tmp_path / "a.json"))
    assert again.returncode == 1  # the plan changed nothing
    assert {u["user_id"] for u in report(tmp_path / "a.json")["users"]} == set(expected)

    fixed = migrator(
        env, "verify", "--rerun", str(found_path), "--repair", "--execute", "--json",
        str(tmp_path / "fixed.json"),
    )  # fmt: skip
    assert fixed.returncode == 1, fixed.stdout + fixed.stderr  # drift is left for an operator
    repairable = {u for u, kind in expected.items() if kind in ("postgres", "redis")}
    left = set(expected) - repairable
    rebuilt = {u for u, kind in expected.items() if kind == "postgres"}
    done = report(tmp_path / "fixed.json")["repair"]
    assert set(done["rebuilt"]) == rebuilt
    audited = await pool.fetch(
        "SELECT user_id, detail FROM onboarding_migration_log"
        " WHERE action = 'repair' AND user_id = ANY($1::text[])",
        users,
    )
    assert {row["user_id"] for row in audited} == rebuilt
    assert all(row["detail"]["rebuilt_from"] == "legacy_snapshot" for row in audited)

    proof = migrator(
        env, "verify", "--rerun", str(found_path), "--json", str(tmp_path / "proof.json")
    )
    assert proof.returncode == 1
    assert {u["user_id"] for u in report(tmp_path / "proof.json")["users"]} == left
    kinds = report(tmp_path / "proof.json")["by_kind"]
    assert kinds["postgres"] == 0 and kinds["redis"] == 0

    # The run says when it was verified, and with what result.
    never = migrator(env, "runs", "show", run_id)
    assert f"never: migrator verify --run {run_id}" in never.stdout
    by_run = migrator(env, "verify", "--run", run_id)
    assert by_run.returncode == 1
    shown = migrator(env, "runs", "show", run_id, "--json")
    last = json.loads(shown.stdout)["last_verified"]
    assert last["ok"] is False and last["checked"] == USERS  # the rolled-back answered too
    assert last["mismatched"] == len(left)
    # ...and it is a run event, for the worker that publishes them (and the on-run-verified hook).
    events = [e for e in await unpublished(pool, settings.app_id) if e.run_id == run_id]
    assert [e.event for e in events] == ["verified"]
    assert events[0].verification is not None
    assert events[0].verification["mismatched"] == len(left)
    assert events[0].verification["ok"] is False


async def test_a_stopped_verification_resumes_after_its_last_chunk(
    settings: Settings,
    pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    unique: str,
    tmp_path: Path,
) -> None:
    users = await cohort(pool, redis_client, unique, run_id=f"vr-{unique}")
    await redis_client.delete(f"onboarding:user:{users[0]}")  # found by the first chunk
    await redis_client.delete(f"onboarding:user:{users[-10]}")  # found after the resume

    class Stop(Exception):
        pass

    def stop_after_first_chunk(done: int) -> None:
        raise Stop

    job = await verify.start(pool, verify.Scope("ids", ids=tuple(users)))
    with pytest.raises(Stop):
        await verify.run(pool, redis_client, job, chunk=20, progress=stop_after_first_chunk)

    resumed = migrator(env_of(settings), "verify", "--resume", "--json", str(tmp_path / "r.json"))
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert f"resuming verification {job.verify_id}" in resumed.stdout
    assert f"after {users[19]}, 20 checked" in resumed.stdout
    final = report(tmp_path / "r.json")
    assert final["checked"] == USERS
    assert [u["user_id"] for u in final["users"]] == [users[0], users[-10]]
    nothing = migrator(env_of(settings), "verify", "--resume")
    assert nothing.returncode == 2 and "nothing to resume" in nothing.stderr


def test_verify_fails_in_one_line(settings: Settings, tmp_path: Path, unique: str) -> None:
    env = env_of(settings)
    for args, cause in (
        (["--rerun", str(tmp_path / "missing.json")], "missing.json: no such file"),
        (["--run", f"nope-{unique}"], f"no run named 'nope-{unique}'"),
        (["--execute"], "--execute repairs: give it with --repair"),
        (["--ids", "a b"], "is not a user id"),
    ):
        result = migrator(env, "verify", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and cause in result.stderr, (args, result.stderr)
    down = migrator(env_of(settings, REDIS_URL="redis://127.0.0.1:9/0"), "verify")
    assert down.returncode == 2 and "Redis at redis://127.0.0.1:9/0" in down.stderr
    assert down.stderr.count("\n") == 1
