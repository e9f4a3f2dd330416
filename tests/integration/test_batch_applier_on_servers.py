"""The batch applier on the real PostgreSQL and Redis of the stack.

The shared scenarios (``support.applier_scenarios``) run here as on the fakes
(``tests/agents/test_batch_applier.py``); below them, what only real servers show: a killed
backend, two workers racing for one record, validate, resync and seeding on what was written.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from support.applier_scenarios import SharedScenarios

from agents.batch_applier import BatchApplier, Unavailable
from agents.core.decide import Work
from agents.core.retry import RetryPolicy
from agents.jobs.resync import prune_redis, repair_pending, resync_redis
from agents.jobs.seed import SeedOptions, generate, write_rows
from agents.jobs.validation import UnknownUser, validate_user
from agents.stores import postgres, redis_mirror
from agents.stores.postgres_batch import PostgresStore
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


class RealServers:
    """``support.applier_scenarios.Servers`` on the stack's PostgreSQL and Redis."""

    def __init__(self, pool: asyncpg.Pool, client: aioredis.Redis, unique: str) -> None:
        self.pool, self.client, self.unique = pool, client, unique
        self._app_ids: dict[int, str] = {}
        self._dead: list[aioredis.Redis] = []

    def applier(self, *, redis_dead: bool = False) -> BatchApplier:
        client = self.client
        if redis_dead:
            client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
            self._dead.append(client)
        app_id = f"app-{self.unique}-{len(self._app_ids)}"
        applier = BatchApplier(
            PostgresStore(self.pool), RedisMirror(client), retry=FAST_RETRY, app_id=app_id
        )
        self._app_ids[id(applier)] = app_id
        return applier

    async def close(self) -> None:
        for client in self._dead:
            await client.aclose()

    async def add_legacy(self, user: str, **columns: Any) -> Any:
        return await insert_legacy(self.pool, user, **columns)

    async def legacy(self, user: str) -> Any:
        return await legacy(self.pool, user)

    async def sessions(self, user: str) -> int:
        query = "SELECT count(*) FROM onboarding_sessions WHERE user_id = $1"
        return int(await self.pool.fetchval(query, user))

    async def audit(self, user: str) -> list[tuple[str, str]]:
        query = (
            "SELECT action, outcome FROM onboarding_migration_log WHERE user_id = $1 ORDER BY id"
        )
        return [(r["action"], r["outcome"]) for r in await self.pool.fetch(query, user)]

    async def pointer(self, user: str) -> str | None:
        pointer, _ = await redis_mirror.read_session(self.client, user)
        return pointer

    async def session_mirrored(self, session_id: uuid.UUID | None) -> bool:
        return bool(await self.client.exists(redis_mirror.session_key(str(session_id))))

    async def drop_mirror(self, user: str) -> None:
        pointer = await self.pointer(user)
        await self.client.delete(redis_mirror.user_key(user))
        if pointer is not None:
            await self.client.delete(redis_mirror.session_key(pointer))

    async def mirror_pending(self, user: str) -> bool:
        query = "SELECT count(*) FROM redis_mirror_pending WHERE user_id = $1"
        return bool(await self.pool.fetchval(query, user))

    async def stored_counters(self, applier: BatchApplier) -> dict[str, Any]:
        query = "SELECT totals FROM partition_counters WHERE app_id = $1 AND source_partition = 0"
        totals: dict[str, Any] = await self.pool.fetchval(query, self._app_ids[id(applier)])
        return totals


class TestOnServers(SharedScenarios):
    @pytest.fixture
    async def servers(
        self, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
    ) -> AsyncIterator[RealServers]:
        servers = RealServers(pool, redis_client, unique)
        yield servers
        await servers.close()


@pytest.fixture
def core(pool: asyncpg.Pool, redis_client: aioredis.Redis) -> BatchApplier:
    return BatchApplier(PostgresStore(pool), RedisMirror(redis_client), retry=FAST_RETRY)


def uid(unique: str, name: str) -> str:
    return f"{name}-{unique}"


async def test_migrate_validate_rollback_restores_the_exact_row(
    core: BatchApplier, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
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


class HeldMirror(RedisMirror):
    """The real mirror, whose batch then waits (rows locked, PostgreSQL not yet committed)
    until the test lets it go: the moment a lock-free read sees Redis ahead of PostgreSQL."""

    def __init__(self, client: aioredis.Redis) -> None:
        super().__init__(client)
        self.written = asyncio.Event()
        self.release = asyncio.Event()

    async def write_sessions(self, *args: Any, **kwargs: Any) -> None:
        await super().write_sessions(*args, **kwargs)
        self.written.set()
        await self.release.wait()


async def test_validate_waits_for_a_rollback_between_its_redis_write_and_its_commit(
    core: BatchApplier, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
) -> None:
    user = uid(unique, "v-inflight")
    await insert_legacy(pool, user)
    await core.apply([work(user)])
    held = HeldMirror(redis_client)
    rollback = asyncio.create_task(
        BatchApplier(PostgresStore(pool), held, retry=FAST_RETRY).apply([work(user, "rollback")])
    )
    try:
        await asyncio.wait_for(held.written.wait(), 10)
        assert await redis_client.exists(redis_mirror.user_key(user)) == 0  # Redis is ahead
        with pytest.raises(postgres.UserBusy, match="being written"):
            await validate_user(pool, redis_client, user, confirm_wait_s=0.2)
        validating = asyncio.create_task(validate_user(pool, redis_client, user))
        await asyncio.sleep(0.3)
        assert not validating.done()  # waiting for the batch's row lock
    finally:
        held.release.set()  # a failure above fails the test rather than hanging it
    [rolled_back] = (await rollback).outcomes
    report = await validating
    assert rolled_back.outcome == "rolled_back"
    assert (report.state, report.ok) == ("rolled_back", True), report.as_dict()


async def test_validate_knows_never_migrated_rolled_back_drift_and_unknown_users(
    core: BatchApplier, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
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


async def test_steps_of_a_session_that_does_not_exist_are_refused(
    core: BatchApplier, pool: asyncpg.Pool, unique: str
) -> None:
    # The statement-level check of DDL 007 and 016 stands in for the row-level foreign key: one
    # orphan among a real session's rows still refuses the whole statement.
    user = uid(unique, "orphan")
    await insert_legacy(pool, user)
    [migrated] = (await core.apply([work(user)])).outcomes
    await pool.execute(
        "DELETE FROM onboarding_steps WHERE session_id = $1 AND step_number IN (1, 2)",
        migrated.session_id,
    )
    insert = (
        "INSERT INTO onboarding_steps (session_id, step_number, step_key, status, required)"
        " SELECT unnest($1::uuid[]), unnest($2::smallint[]), 'account_created', 'pending', true"
    )
    orphan = uuid.uuid4()
    with pytest.raises(asyncpg.ForeignKeyViolationError, match=f"session {orphan} does not"):
        await pool.execute(insert, [migrated.session_id, orphan, migrated.session_id], [1, 1, 2])
    await pool.execute(insert, [migrated.session_id, migrated.session_id], [1, 2])
    steps = "SELECT count(*) FROM onboarding_steps WHERE session_id = $1"
    assert await pool.fetchval(steps, migrated.session_id) == 24


async def test_connection_killed_mid_batch_leaves_nothing_and_the_retry_succeeds(
    core: BatchApplier, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
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
    broken = BatchApplier(PostgresStore(pool), RedisMirror(dead_redis), retry=FAST_RETRY)
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


async def test_resync_rebuilds_redis_from_postgres(
    core: BatchApplier, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
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
    core: BatchApplier, pool: asyncpg.Pool, unique: str
) -> None:
    options = SeedOptions(users=300, prefix=f"seed-{unique}-", seed=7)
    assert await write_rows(pool, generate(options)) == 300
    assert await write_rows(pool, generate(options)) == 0
    user_ids = [row[0] for row in generate(options)]
    outcomes = (await core.apply([work(user) for user in user_ids])).outcomes
    assert {o.outcome for o in outcomes} == {"migrated"}
    statuses = {o.session_status for o in outcomes}
    assert statuses == {"completed", "in_progress", "not_started"}


async def test_the_ledger_keeps_the_bytes_published_and_a_duplicate_is_answered_from_them(
    core: BatchApplier, pool: asyncpg.Pool, unique: str
) -> None:
    user = uid(unique, "ledger")
    await insert_legacy(pool, user)
    first = work(user)
    applied = await core.apply([first])
    stored = await pool.fetchval(
        "SELECT outcome FROM migration_requests WHERE request_id = $1", first.request.request_id
    )
    assert stored == applied.answers[0].json  # byte for byte, not a reformatted document
    again = work(user, request_id=first.request.request_id)  # the same request, another record
    [duplicate] = (await core.apply([again])).outcomes
    [original] = applied.outcomes
    assert duplicate.already_done and duplicate.outcome == "migrated"
    assert duplicate.session_id == original.session_id and duplicate.bcm == original.bcm


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
        BatchApplier(
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
    # The replayed answers are the very bytes the first worker published.
    assert [x.json for x in a.answers] == [x.json for x in b.answers]
    assert {o.outcome for o in a.outcomes} == {"migrated", "rolled_back"}
    stored = await pool.fetchval(
        "SELECT totals FROM partition_counters WHERE app_id = $1", f"race-{unique}"
    )
    assert stored["requested"] == len(batch)  # counted once


async def test_a_nul_in_a_free_text_field_is_stored_not_refused(
    core: BatchApplier, pool: asyncpg.Pool, unique: str
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


async def test_failures_by_code_count_users_failing_now_each_once(
    core: BatchApplier, pool: asyncpg.Pool, unique: str
) -> None:
    """The failures panel: a user failing twice is one user, listed once; a user whose data was
    fixed and who migrated since is not a failure any more."""
    bad, fixed = uid(unique, "twice"), uid(unique, "fixed")
    await insert_legacy(pool, bad, completed_steps=["account", "wizard"])
    await insert_legacy(pool, fixed, completed_steps=["account", "wizard"])
    await core.apply([work(bad), work(fixed)])
    await core.apply([work(bad)])
    await pool.execute(
        "UPDATE legacy_onboarding_status SET completed_steps = '{}' WHERE user_id = $1", fixed
    )
    [migrated] = (await core.apply([work(fixed)])).outcomes
    assert migrated.outcome == "migrated"
    rows = {r["error_code"]: r for r in await postgres.failure_samples(pool, sample=100_000)}
    sample = list(rows["unknown_legacy_step"]["sample"])
    assert sample.count(bad) == 1 and fixed not in sample


@pytest.mark.parametrize(
    "column, value",
    [
        ("answers", """'["grow"]'::jsonb"""),
        ("answers", """'"grow"'::jsonb"""),
        ("answers", "'null'::jsonb"),
        ("completed_steps", "ARRAY['account', NULL]"),
    ],
    ids=["answers-an-array", "answers-a-string", "answers-json-null", "a-null-completed-step"],
)
async def test_a_legacy_row_the_columns_allow_but_the_model_does_not_fails_alone(
    core: BatchApplier, pool: asyncpg.Pool, unique: str, column: str, value: str
) -> None:
    """jsonb takes any JSON and text[] takes NULL elements: such a row is that user's
    ``invalid_legacy_data`` (saying what is wrong), never an error of the whole batch."""
    bad, good = uid(unique, "odd"), uid(unique, "fine")
    await insert_legacy(pool, bad)
    await pool.execute(
        f"UPDATE legacy_onboarding_status SET {column} = {value} WHERE user_id = $1", bad
    )
    await insert_legacy(pool, good)
    applied = await core.apply([work(bad), work(good)])
    assert applied is not None
    failed, migrated = applied.outcomes
    assert failed.outcome == "failed" and failed.error is not None
    assert failed.error.code == "invalid_legacy_data" and failed.error.retryable is False
    assert column in failed.error.message
    assert migrated.outcome == "migrated"
    assert (await legacy(pool, bad))["status"] == "in_progress"


async def test_validate_reads_a_legacy_row_the_model_cannot_and_reports_it_as_drift(
    core: BatchApplier, pool: asyncpg.Pool, redis_client: aioredis.Redis, unique: str
) -> None:
    """A never-migrated user whose row cannot be read is still never migrated; a migrated
    user whose row the legacy system later changed into such a shape has drifted."""
    odd, drifted = uid(unique, "v-odd"), uid(unique, "v-drifted")
    set_array = "UPDATE legacy_onboarding_status SET answers = '[1]'::jsonb WHERE user_id = $1"
    await insert_legacy(pool, odd)
    await pool.execute(set_array, odd)
    report = await validate_user(pool, redis_client, odd)
    assert (report.state, report.ok) == ("never_migrated", True), report.as_dict()

    await insert_legacy(pool, drifted)
    [migrated] = (await core.apply([work(drifted)])).outcomes
    assert migrated.outcome == "migrated"
    await pool.execute(set_array, drifted)
    report = await validate_user(pool, redis_client, drifted)
    failed = [check.name for check in report.checks if not check.ok]
    assert (report.state, failed) == ("migrated", ["legacy_row_unchanged_since_migration"])
