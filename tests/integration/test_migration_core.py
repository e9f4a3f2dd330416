"""The migration core on the real PostgreSQL and Redis of the stack."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from agents.batch_applier import MigrationCore, Unavailable
from agents.core.decide import Work
from agents.core.retry import RetryPolicy
from agents.jobs.resync import prune_redis, repair_pending, resync_redis
from agents.jobs.seed import SeedOptions, generate, write_rows
from agents.jobs.validation import UnknownUser, validate_user
from agents.stores import redis_mirror
from agents.stores.postgres import PostgresStore
from agents.stores.redis_mirror import RedisMirror
from schemas.events import MigrationRequest

FAST_RETRY = RetryPolicy(max_retries=1, base_delay_s=0.01, max_delay_s=0.01)
_offsets = iter(range(10**9))


def work(
    user_id: str,
    action: str = "migrate",
    *,
    dry_run: bool = False,
    request_id: Any = None,
    offset: int | None = None,
) -> Work:
    request = MigrationRequest(
        request_id=request_id or uuid.uuid4(), user_id=user_id, action=action, dry_run=dry_run
    )
    return Work(request, 0, next(_offsets) if offset is None else offset, None)


async def insert_legacy(pool: asyncpg.Pool, user_id: str, **columns: Any) -> dict[str, Any]:
    row = {
        "workspace_id": "ws-1",
        "status": "in_progress",
        "current_step": "goals",
        "completed_steps": ["account", "profile", "account", "workspace"],
        "answers": {"company_name": "Müller & Söhne 株式会社", "goals": ["grow ☀️"]},
        "updated_at": datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC),
        **columns,
    }
    await pool.execute(
        "INSERT INTO legacy_onboarding_status (user_id, workspace_id, status, current_step,"
        " completed_steps, answers, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        user_id,
        row["workspace_id"],
        row["status"],
        row["current_step"],
        row["completed_steps"],
        row["answers"],
        row["updated_at"],
    )
    return await legacy(pool, user_id)


async def legacy(pool: asyncpg.Pool, user_id: str) -> dict[str, Any]:
    record = await pool.fetchrow(
        "SELECT * FROM legacy_onboarding_status WHERE user_id = $1", user_id
    )
    return dict(record) if record else {}


@pytest.fixture
def core(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> MigrationCore:
    return MigrationCore(PostgresStore(pool), RedisMirror(redis_client), retry=FAST_RETRY)


def uid(unique: str, name: str) -> str:
    return f"{name}-{unique}"


async def test_migrate_validate_rollback_restores_the_exact_row(
    core: MigrationCore, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
) -> None:
    user = uid(unique, "roundtrip")
    original = await insert_legacy(pool, user, workspace_id=None, status="completed")

    [migrated] = (await core.apply([work(user)])).outcomes
    assert migrated.outcome == "migrated" and not migrated.already_done
    assert migrated.session_status == "completed" and migrated.bcm is not None
    report = await validate_user(pool, redis_client, user)
    assert report.ok, report.as_dict()
    assert (await legacy(pool, user))["status"] == "migrated"
    steps = "SELECT count(*) FROM onboarding_steps WHERE session_id = $1"
    assert await pool.fetchval(steps, migrated.session_id) == 24

    [rolled_back] = (await core.apply([work(user, "rollback")])).outcomes
    assert rolled_back.outcome == "rolled_back"
    assert rolled_back.matches_snapshot is True
    assert rolled_back.restored_legacy_sha256 == migrated.legacy_snapshot_sha256
    assert await legacy(pool, user) == original
    count = await pool.fetchval("SELECT count(*) FROM onboarding_sessions WHERE user_id = $1", user)
    assert count == 0
    assert await pool.fetchval(steps, migrated.session_id) == 0  # gone with their session
    assert await redis_client.exists(redis_mirror.user_key(user)) == 0
    assert await redis_client.exists(redis_mirror.session_key(migrated.session_id or "")) == 0
    audit = await pool.fetch(
        "SELECT action, outcome FROM onboarding_migration_log WHERE user_id = $1 ORDER BY id", user
    )
    assert [(r["action"], r["outcome"]) for r in audit] == [
        ("migrate", "migrated"),
        ("rollback", "rolled_back"),
    ]
    report = await validate_user(pool, redis_client, user)
    assert (report.state, report.ok) == ("rolled_back", True), report.as_dict()


async def test_validate_knows_never_migrated_rolled_back_drift_and_unknown_users(
    core: MigrationCore, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
) -> None:
    fresh, back = uid(unique, "v-fresh"), uid(unique, "v-back")
    await insert_legacy(pool, fresh)
    await insert_legacy(pool, back)
    await core.apply([work(fresh, dry_run=True)])  # a dry run leaves the user never migrated
    report = await validate_user(pool, redis_client, fresh)
    assert (report.state, report.ok) == ("never_migrated", True), report.as_dict()

    await core.apply([work(back), work(back, "rollback")])
    await pool.execute(
        "UPDATE legacy_onboarding_status SET current_step = 'brand' WHERE user_id = $1", back
    )
    report = await validate_user(pool, redis_client, back)
    failed = [check.name for check in report.checks if not check.ok]
    assert (report.state, failed) == ("rolled_back", ["legacy_row_unchanged_since_rollback"])

    with pytest.raises(UnknownUser):
        await validate_user(pool, redis_client, uid(unique, "v-nobody"))


async def test_steps_of_a_session_that_does_not_exist_are_refused(pool: asyncpg.Pool) -> None:
    # The statement-level check of DDL 007 stands in for the row-level foreign key.
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
        await pool.execute(
            "INSERT INTO onboarding_steps (session_id, step_number, step_key, status, required)"
            " VALUES ($1, 1, 'account_created', 'pending', true)",
            uuid.uuid4(),
        )


async def test_repeats_change_nothing_and_say_already_done(
    core: MigrationCore, pool: asyncpg.Pool, unique: str
) -> None:
    user = uid(unique, "repeat")
    await insert_legacy(pool, user)
    first_work = work(user)
    [first] = (await core.apply([first_work])).outcomes
    [redelivered] = (await core.apply([first_work])).outcomes  # the same record again
    duplicate_work = work(user, request_id=first_work.request.request_id)
    [duplicate] = (await core.apply([duplicate_work])).outcomes
    [again] = (await core.apply([work(user)])).outcomes  # a new request for a migrated user
    assert redelivered == first
    assert duplicate.already_done and duplicate.outcome == "migrated"
    assert duplicate.session_id == first.session_id and duplicate.event_id != first.event_id
    assert again.already_done and again.session_id == first.session_id
    sessions = await pool.fetchval(
        "SELECT count(*) FROM onboarding_sessions WHERE user_id = $1", user
    )
    assert sessions == 1


async def test_one_bad_user_never_fails_the_others(
    core: MigrationCore, pool: asyncpg.Pool, unique: str
) -> None:
    good = [uid(unique, f"good{i}") for i in range(3)]
    for user in good:
        await insert_legacy(pool, user)
    await insert_legacy(pool, uid(unique, "badstep"), completed_steps=["account", "wizard"])
    await insert_legacy(pool, uid(unique, "badtype"), answers={"goals": "grow"})
    batch = [
        work(good[0]),
        work(uid(unique, "missing")),
        work(uid(unique, "badstep")),
        work(good[1]),
        work(uid(unique, "notmigrated"), "rollback"),
        work(uid(unique, "badtype")),
        work(good[2]),
    ]
    outcomes = (await core.apply(batch)).outcomes
    got = [(o.outcome, o.error.code.value if o.error else None) for o in outcomes]
    assert got == [
        ("migrated", None),
        ("failed", "user_not_found"),
        ("failed", "unknown_legacy_step"),
        ("migrated", None),
        ("failed", "not_migrated"),
        ("failed", "invalid_legacy_data"),
        ("migrated", None),
    ]
    failed = outcomes[1]
    assert failed.error is not None and failed.error.retryable is False
    assert failed.request is not None and failed.request["user_id"] == uid(unique, "missing")
    assert (await legacy(pool, uid(unique, "badstep")))["status"] == "in_progress"


async def test_dry_run_writes_only_the_audit_log(
    core: MigrationCore, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
) -> None:
    user = uid(unique, "dry")
    before = await insert_legacy(pool, user, status="completed")
    [outcome] = (await core.apply([work(user, dry_run=True)])).outcomes
    assert outcome.dry_run and outcome.outcome == "migrated" and outcome.bcm is not None
    assert await legacy(pool, user) == before
    assert (
        await pool.fetchval("SELECT count(*) FROM onboarding_sessions WHERE user_id=$1", user) == 0
    )
    assert await redis_client.exists(redis_mirror.user_key(user)) == 0
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM onboarding_migration_log WHERE user_id = $1", user
        )
        == 1
    )
    await core.apply([work(user)])
    [dry_rollback] = (await core.apply([work(user, "rollback", dry_run=True)])).outcomes
    assert dry_rollback.outcome == "rolled_back" and dry_rollback.matches_snapshot is True
    assert (await legacy(pool, user))["status"] == "migrated"


async def test_requests_of_one_user_apply_in_order_within_a_batch(
    core: MigrationCore, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
) -> None:
    user = uid(unique, "order")
    await insert_legacy(pool, user)
    outcomes = (await core.apply([work(user), work(user, "rollback"), work(user)])).outcomes
    assert [o.outcome for o in outcomes] == ["migrated", "rolled_back", "migrated"]
    assert outcomes[0].session_id != outcomes[2].session_id
    report = await validate_user(pool, redis_client, user)
    assert report.ok, report.as_dict()
    pointer, _ = await redis_mirror.read_session(redis_client, user)
    assert pointer == str(outcomes[2].session_id)
    assert await redis_client.exists(redis_mirror.session_key(outcomes[0].session_id or "")) == 0


async def test_connection_killed_mid_batch_leaves_nothing_and_the_retry_succeeds(
    core: MigrationCore, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
) -> None:
    users = [uid(unique, f"kill{i}") for i in range(4)]
    originals = [await insert_legacy(pool, user) for user in users]
    trigger = f"slow_{unique}"
    # Hold the batch inside its transaction (after sessions and steps were written) so the
    # test can kill its backend at a known point.
    await pool.execute(f"""
        CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(30); RETURN NEW; END $$;
        CREATE TRIGGER {trigger} BEFORE UPDATE ON legacy_onboarding_status FOR EACH ROW
            WHEN (NEW.user_id = '{users[-1]}') EXECUTE FUNCTION {trigger}();
    """)
    batch = [work(user) for user in users]
    try:
        task = asyncio.create_task(core.apply_once(batch))
        pid = None
        for _ in range(200):
            pid = await pool.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                " AND query LIKE '%legacy_onboarding_status%'"
            )
            if pid:
                break
            await asyncio.sleep(0.05)
        assert pid, "the batch never reached the slow trigger"
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(Unavailable) as caught:
            await task
        assert caught.value.code.value == "database_unavailable"
    finally:
        await pool.execute(
            f"DROP TRIGGER IF EXISTS {trigger} ON legacy_onboarding_status;"
            f" DROP FUNCTION IF EXISTS {trigger}()"
        )
    for user, original in zip(users, originals, strict=True):
        assert await legacy(pool, user) == original
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM onboarding_sessions WHERE user_id = ANY($1)", users
        )
        == 0
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM onboarding_migration_log WHERE user_id = ANY($1)", users
        )
        == 0
    )
    outcomes = (await core.apply(batch)).outcomes
    assert [o.outcome for o in outcomes] == ["migrated"] * 4
    for user in users:
        assert (await validate_user(pool, redis_client, user)).ok


async def test_redis_down_after_commit_answers_success_and_the_mirror_is_repaired(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
) -> None:
    user = uid(unique, "cache")
    await insert_legacy(pool, user)
    dead_redis = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    broken = MigrationCore(PostgresStore(pool), RedisMirror(dead_redis), retry=FAST_RETRY)
    applied = await broken.apply([work(user)])
    assert applied is not None
    [done] = applied.outcomes
    # PostgreSQL committed, so the answer is the success; the mirror is owed, not lost.
    assert done.outcome == "migrated" and done.error is None and not done.already_done
    assert applied.mirror_pending == 1 and broken.redis_down
    assert await pool.fetchval("SELECT count(*) FROM redis_mirror_pending WHERE user_id = $1", user)
    assert (await validate_user(pool, redis_client, user)).ok is False
    assert await repair_pending(pool, redis_client) >= 1
    assert (await validate_user(pool, redis_client, user)).ok
    assert not await pool.fetchval(
        "SELECT count(*) FROM redis_mirror_pending WHERE user_id = $1", user
    )
    await dead_redis.aclose()


async def test_a_redone_batch_answers_exactly_as_the_first_time(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
) -> None:
    """Redoing a batch (crash, rebalance, fenced producer) must not decide anything again:
    a dry run decided before the user's later rollback would now say ``not_migrated``, and a
    [rollback, migrate] pair would now say ``rolled_back`` for a user left migrated."""
    core = MigrationCore(
        PostgresStore(pool), RedisMirror(redis_client), retry=FAST_RETRY, app_id=f"app-{unique}"
    )
    migrated, fresh = uid(unique, "redo-m"), uid(unique, "redo-f")
    await insert_legacy(pool, migrated)
    await insert_legacy(pool, fresh)
    await core.apply([work(migrated)])
    batch = [
        work(migrated, "rollback", dry_run=True),
        work(migrated, "rollback"),
        work(fresh, "rollback"),
        work(fresh),
    ]
    first = await core.apply(batch)
    again = await core.apply(batch)
    assert first is not None and again is not None
    assert [(o.outcome, o.dry_run) for o in first.outcomes] == [
        ("rolled_back", True),
        ("rolled_back", False),
        ("failed", False),
        ("migrated", False),
    ]
    assert [o.model_dump() for o in again.outcomes] == [o.model_dump() for o in first.outcomes]
    # Counted once: the redo answered from the record of the first answers.
    assert again.totals == {} and first.totals[0]["requested"] == 5
    stored = await pool.fetchval(
        "SELECT totals FROM partition_counters WHERE app_id = $1", f"app-{unique}"
    )
    assert stored["requested"] == 5 and stored["dry_run"] == 1
    assert await pool.fetchval("SELECT count(*) FROM onboarding_sessions WHERE user_id = $1", fresh)


async def test_a_position_holding_another_record_is_answered_afresh(
    core: MigrationCore, pool: asyncpg.Pool, unique: str
) -> None:
    user = uid(unique, "recreated")
    await insert_legacy(pool, user)
    first = work(user, "rollback")
    [answer] = (await core.apply([first])).outcomes
    assert answer.outcome == "failed"
    other = Work(
        MigrationRequest(request_id=uuid.uuid4(), user_id=user),
        first.partition,
        first.offset,
        None,
        b"another record",
    )
    [answer] = (await core.apply([other])).outcomes
    assert answer.outcome == "migrated"


async def test_resync_rebuilds_redis_from_postgres(
    core: MigrationCore, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
) -> None:
    users = [uid(unique, f"resync{i}") for i in range(3)]
    for user in users:
        await insert_legacy(pool, user)
    outcomes = (await core.apply([work(user) for user in users])).outcomes
    for outcome in outcomes:
        await redis_client.delete(redis_mirror.session_key(outcome.session_id or ""))
    await redis_client.delete(redis_mirror.user_key(users[0]))
    assert not (await validate_user(pool, redis_client, users[0])).ok
    ghost_user, ghost_session = uid(unique, "ghost"), uuid.uuid4()
    await redis_client.set(redis_mirror.user_key(ghost_user), str(ghost_session))
    await redis_client.set(redis_mirror.session_key(ghost_session), "{}")
    await redis_client.set(redis_mirror.session_key(f"not-a-uuid-{unique}"), "{}")
    written = await resync_redis(pool, redis_client, page_size=2)
    assert written >= 3
    assert await prune_redis(pool, redis_client) >= 3
    for user in users:
        assert (await validate_user(pool, redis_client, user)).ok
    assert (
        await redis_client.exists(
            redis_mirror.user_key(ghost_user),
            redis_mirror.session_key(ghost_session),
            redis_mirror.session_key(f"not-a-uuid-{unique}"),
        )
        == 0
    )


async def test_seeding_is_idempotent_and_seeded_users_migrate(
    core: MigrationCore, pool: asyncpg.Pool, unique: str
) -> None:
    options = SeedOptions(users=300, prefix=f"seed-{unique}-", seed=7)
    assert await write_rows(pool, generate(options)) == 300
    assert await write_rows(pool, generate(options)) == 0
    user_ids = [row[0] for row in generate(options)]
    outcomes = (await core.apply([work(user) for user in user_ids])).outcomes
    assert {o.outcome for o in outcomes} == {"migrated"}
    statuses = {o.session_status for o in outcomes}
    assert statuses == {"completed", "in_progress", "not_started"}


async def test_two_workers_answering_one_record_at_once_agree(
    pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
) -> None:
    """A zombie and a partition's new owner can hold the same records for a moment: whichever
    commits second replays the first one's answers instead of failing or deciding again."""
    users = [uid(unique, f"race{i}") for i in range(20)]
    for user in users:
        await insert_legacy(pool, user)
    batch = [work(user) for user in users] + [work(users[0], "rollback", dry_run=True)]
    first, second = (
        MigrationCore(
            PostgresStore(pool),
            RedisMirror(redis_client),
            retry=FAST_RETRY,
            app_id=f"race-{unique}",
        )
        for _ in range(2)
    )
    a, b = await asyncio.gather(first.apply(batch), second.apply(batch))
    assert a is not None and b is not None
    assert [o.model_dump() for o in a.outcomes] == [o.model_dump() for o in b.outcomes]
    assert {o.outcome for o in a.outcomes} == {"migrated", "rolled_back"}
    stored = await pool.fetchval(
        "SELECT totals FROM partition_counters WHERE app_id = $1", f"race-{unique}"
    )
    assert stored["requested"] == len(batch)  # counted once


async def test_a_nul_in_a_free_text_field_is_stored_not_refused(
    core: MigrationCore, pool: asyncpg.Pool, unique: str
) -> None:
    """PostgreSQL's jsonb refuses U+0000; the request's ``reason`` reaches it as U+FFFD."""
    user = uid(unique, "nul")
    await insert_legacy(pool, user)
    requests = [
        MigrationRequest(
            request_id=uuid.uuid4(),
            user_id=user,
            action="migrate",
            dry_run=True,
            reason="bad\x00reason",
        ),
        MigrationRequest(
            request_id=uuid.uuid4(),
            user_id=uid(unique, "nul-missing"),
            action="migrate",
            reason="\x00",
        ),
    ]
    outcomes = (await core.apply([Work(r, 0, next(_offsets), None) for r in requests])).outcomes
    assert [(o.outcome, o.error.code.value if o.error else None) for o in outcomes] == [
        ("migrated", None),
        ("failed", "user_not_found"),
    ]
    assert outcomes[1].request is not None and outcomes[1].request["reason"] == "\x00"
    stored = await pool.fetchval(
        "SELECT detail -> 'outcome' -> 'request' ->> 'reason' FROM onboarding_migration_log"
        " WHERE user_id = $1",
        uid(unique, "nul-missing"),
    )
    assert stored == "\ufffd"
