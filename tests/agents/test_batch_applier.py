"""The batch applier's failure paths, on in-memory stores: retry, halving, waiting, mirror repair.

The same paths run against real servers in ``tests/integration/test_migration_core.py`` and
under injected faults in ``tests/e2e``; here each is driven exactly and takes milliseconds.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from itertools import count
from typing import Any

import asyncpg
import pytest
from support.factories import NOW, row
from support.fake_stores import FakePostgres, FakeRedis

from agents import batch_applier
from agents.batch_applier import MigrationCore
from agents.core.decide import Work
from agents.core.retry import RetryPolicy
from schemas.events import MigrationRequest

_offsets = count()


def work(user_id: str, action: str = "migrate", *, dry_run: bool = False) -> Work:
    request = MigrationRequest(
        request_id=uuid.uuid4(), user_id=user_id, action=action, dry_run=dry_run
    )
    offset = next(_offsets)
    return Work(request, 0, offset, None, f"digest-{offset}".encode())


@pytest.fixture
def postgres() -> FakePostgres:
    server = FakePostgres()
    for user in ("u1", "u2", "u3", "u4", "bad"):
        server.tables.legacy[user] = row(user_id=user, completed_steps=["account", "profile"])
    return server


@pytest.fixture
def redis() -> FakeRedis:
    return FakeRedis()


@pytest.fixture
def core(
    postgres: FakePostgres, redis: FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> MigrationCore:
    monkeypatch.setattr(batch_applier, "_OUTAGE_POLL_S", (0.001, 0.005))
    retry = RetryPolicy(max_retries=2, base_delay_s=0.001, max_delay_s=0.001)
    return MigrationCore(postgres, redis, retry=retry, clock=lambda: NOW, app_id="test")


def answers(applied: Any) -> list[tuple[str, str, str | None]]:
    return [
        (o.user_id, o.outcome, o.error.code.value if o.error else None) for o in applied.outcomes
    ]


def when(
    statement: str, error: BaseException, *, times: int | None = None, user: str | None = None
):
    """A refusal: ``statement`` raises ``error`` (``times`` times, or always), optionally only
    while one of its rows or ids belongs to ``user``."""
    left = [times]

    def refusal(name: str, arguments: Mapping[str, Any]) -> BaseException | None:
        if name != statement or left[0] == 0:
            return None
        if user is not None and user not in repr(arguments):
            return None
        if left[0] is not None:
            left[0] -= 1
        return error

    return refusal


async def test_a_batch_commits_once_and_mirrors_every_user(
    core: MigrationCore, postgres: FakePostgres, redis: FakeRedis
) -> None:
    applied = await core.apply([work("u1"), work("u2")])
    assert answers(applied) == [("u1", "migrated", None), ("u2", "migrated", None)]
    assert postgres.commits == 1 and postgres.rollbacks == 0
    assert set(postgres.tables.sessions) == {"u1", "u2"}
    assert set(redis.users) == {"u1", "u2"}
    assert len(postgres.tables.processed) == 2 and len(postgres.tables.audit) == 2
    assert applied.totals[0]["migrated"] == 2


async def test_a_deadlock_is_retried_and_the_batch_then_commits(
    core: MigrationCore, postgres: FakePostgres
) -> None:
    postgres.refuse(when("lock_legacy_rows", asyncpg.DeadlockDetectedError("deadlock"), times=2))
    applied = await core.apply([work("u1")])
    assert answers(applied) == [("u1", "migrated", None)]
    assert postgres.rollbacks == 2 and postgres.commits == 1


async def test_a_spent_retry_budget_answers_database_unavailable_and_records_it(
    core: MigrationCore, postgres: FakePostgres
) -> None:
    postgres.refuse(when("lock_legacy_rows", asyncpg.DeadlockDetectedError("deadlock")))
    applied = await core.apply([work("u1"), work("u2")])
    assert answers(applied) == [
        ("u1", "failed", "database_unavailable"),
        ("u2", "failed", "database_unavailable"),
    ]
    assert all(o.error is not None and o.error.retryable for o in applied.outcomes)
    assert postgres.rollbacks == 3  # 1 try + max_retries 2, then the failures are recorded
    assert [a.outcome for a in postgres.tables.audit] == ["failed", "failed"]
    assert postgres.tables.sessions == {}
    assert applied.totals[0]["failed"] == 2


async def test_a_statement_refused_for_one_user_fails_only_that_user_by_halving(
    core: MigrationCore, postgres: FakePostgres
) -> None:
    postgres.refuse(when("insert_sessions", asyncpg.DataError("invalid byte"), user="'bad'"))
    batch = [work("u1"), work("u2"), work("bad"), work("u3"), work("u4")]
    applied = await core.apply(batch)
    assert answers(applied) == [
        ("u1", "migrated", None),
        ("u2", "migrated", None),
        ("bad", "failed", "internal_error"),
        ("u3", "migrated", None),
        ("u4", "migrated", None),
    ]
    assert set(postgres.tables.sessions) == {"u1", "u2", "u3", "u4"}
    assert postgres.tables.legacy["bad"].status == "in_progress"
    # Every record answered exactly once, whichever half answered it.
    assert len(postgres.tables.processed) == 5


async def test_postgres_down_waits_without_failing_and_resumes(
    core: MigrationCore, postgres: FakePostgres
) -> None:
    postgres.up = False
    task = asyncio.ensure_future(core.apply([work("u1")]))
    for _ in range(200):
        if core.waiting_for is not None:
            break
        await asyncio.sleep(0.001)
    assert core.waiting_for is not None and "PostgreSQL" in core.waiting_for
    assert not task.done()
    postgres.up = True
    applied = await asyncio.wait_for(task, timeout=5)
    assert answers(applied) == [("u1", "migrated", None)]
    assert core.waiting_for is None


async def test_a_batch_abandoned_while_postgres_is_down_writes_nothing(
    core: MigrationCore, postgres: FakePostgres
) -> None:
    postgres.up = False
    abandoned = asyncio.Event()
    task = asyncio.ensure_future(core.apply([work("u1")], abandoned=abandoned.is_set))
    await asyncio.sleep(0.01)
    abandoned.set()
    assert await asyncio.wait_for(task, timeout=5) is None
    assert postgres.commits == 0 and postgres.tables.processed == {}


async def test_redis_down_answers_migrated_and_marks_the_users_pending(
    core: MigrationCore, postgres: FakePostgres, redis: FakeRedis
) -> None:
    redis.up = False
    applied = await core.apply([work("u1"), work("u2")])
    assert answers(applied) == [("u1", "migrated", None), ("u2", "migrated", None)]
    assert applied.mirror_pending == 2
    assert postgres.tables.mirror_pending == {"u1", "u2"}
    assert core.redis_down
    # Until the repair loop sees Redis answer, batches do not wait on Redis again.
    redis.up = True
    await core.apply([work("u3")])
    assert redis.writes == 0 and postgres.tables.mirror_pending == {"u1", "u2", "u3"}


async def test_a_request_seen_again_rewrites_its_users_mirror_from_postgres(
    core: MigrationCore, redis: FakeRedis
) -> None:
    first = work("u1")
    await core.apply([first])
    written = dict(redis.sessions)
    redis.sessions.clear()
    redis.users.clear()
    # The same request republished (another record): answered as before, mirror repaired.
    again = await core.apply([Work(first.request, 0, next(_offsets), None, b"republished")])
    assert answers(again) == [("u1", "migrated", None)]
    assert redis.sessions == written  # the document read back equals the one planned


async def test_a_record_answered_concurrently_elsewhere_is_redone_and_replayed(
    core: MigrationCore, postgres: FakePostgres
) -> None:
    conflict = asyncpg.UniqueViolationError("duplicate key value")
    postgres.refuse(when("insert_processed_records", conflict, times=1))
    applied = await core.apply([work("u1")])
    assert answers(applied) == [("u1", "migrated", None)]
    assert postgres.rollbacks == 1 and postgres.commits == 1


async def test_a_rollback_restores_the_exact_legacy_row(
    core: MigrationCore, postgres: FakePostgres, redis: FakeRedis
) -> None:
    before = postgres.tables.legacy["u1"]
    await core.apply([work("u1")])
    assert postgres.tables.legacy["u1"].status == "migrated"
    applied = await core.apply([work("u1", "rollback")])
    assert answers(applied) == [("u1", "rolled_back", None)]
    assert postgres.tables.legacy["u1"] == before
    assert "u1" not in postgres.tables.sessions and "u1" not in redis.users


async def test_an_error_while_postgres_goes_away_waits_instead_of_failing_the_request(
    core: MigrationCore, postgres: FakePostgres
) -> None:
    """The client reports a server killed mid-statement in its own words (here a plain
    RuntimeError): with PostgreSQL not answering, that is an outage, not a refused request."""

    cuts: list[str] = []

    def cut(name: str, arguments: Mapping[str, Any]) -> BaseException | None:
        if name == "insert_sessions" and not cuts:
            cuts.append(name)
            postgres.up = False
            asyncio.get_running_loop().call_later(0.02, setattr, postgres, "up", True)
            return RuntimeError("cannot switch to state 15; another operation is in progress")
        return None

    postgres.refuse(cut)
    applied = await core.apply([work("u1")])  # alone: nothing to halve, a refusal would fail it
    assert answers(applied) == [("u1", "migrated", None)]
    assert not [a for a in postgres.tables.audit if a.outcome == "failed"]
    assert cuts and postgres.rollbacks == 1
