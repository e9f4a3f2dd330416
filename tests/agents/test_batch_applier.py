"""The batch applier on in-memory stores: the shared scenarios, and the failure paths only the
fakes can drive exactly (a deadlock on a given statement, one refused row, an outage that ends
on cue): retry, halving, waiting, redoing. Milliseconds each.

The shared scenarios (``support.applier_scenarios``) run on the real servers too, in
``tests/integration/test_batch_applier_on_servers.py``; injected faults in ``tests/e2e``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from itertools import count
from typing import Any

import pytest
from support.applier_scenarios import SharedScenarios, answers
from support.factories import FAST_RETRY, NOW, row
from support.fake_stores import FakePostgres, FakeRedis

from agents.batch_applier import BatchApplier
from agents.core.decide import Work
from agents.stores.errors import AnsweredElsewhere, StatementRefused, StoreUnavailable
from schemas.events import MigrationRequest

_offsets = count()


def work(user_id: str, action: str = "migrate", *, dry_run: bool = False) -> Work:
    request = MigrationRequest(
        request_id=uuid.uuid4(), user_id=user_id, action=action, dry_run=dry_run
    )
    offset = next(_offsets)
    return Work(request, 0, offset, None, f"digest-{offset}".encode())


class FakeServers:
    """``support.applier_scenarios.Servers`` on the fakes."""

    def __init__(self) -> None:
        self.postgres = FakePostgres()
        self.redis = FakeRedis()
        self._apps = count()
        self._app_ids: dict[int, str] = {}

    def applier(self, *, redis_dead: bool = False) -> BatchApplier:
        mirror = self.redis
        if redis_dead:
            mirror = FakeRedis()
            mirror.up = False
        app_id = f"app-{next(self._apps)}"
        applier = BatchApplier(
            self.postgres, mirror, retry=FAST_RETRY, clock=lambda: NOW, app_id=app_id
        )
        self._app_ids[id(applier)] = app_id
        return applier

    async def add_legacy(self, user: str, **columns: Any) -> Any:
        self.postgres.tables.legacy[user] = row(
            **{"user_id": user, "completed_steps": ["account", "profile"], **columns}
        )
        return await self.legacy(user)

    async def legacy(self, user: str) -> Any:
        found = self.postgres.tables.legacy.get(user)
        return None if found is None else found.model_dump()

    async def sessions(self, user: str) -> int:
        return int(user in self.postgres.tables.sessions)

    async def audit(self, user: str) -> list[tuple[str, str]]:
        return [(a.action, a.outcome) for a in self.postgres.tables.audit if a.user_id == user]

    async def pointer(self, user: str) -> str | None:
        return self.redis.users.get(user)

    async def session_mirrored(self, session_id: uuid.UUID | None) -> bool:
        return str(session_id) in self.redis.sessions

    async def drop_mirror(self, user: str) -> None:
        session_id = self.redis.users.pop(user, None)
        self.redis.sessions.pop(str(session_id), None)

    async def mirror_pending(self, user: str) -> bool:
        return user in self.postgres.tables.mirror_pending

    async def stored_counters(self, applier: BatchApplier) -> dict[str, Any]:
        return self.postgres.tables.counters[(self._app_ids[id(applier)], 0)]


class TestOnFakes(SharedScenarios):
    @pytest.fixture
    def servers(self) -> FakeServers:
        return FakeServers()


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


async def test_a_batch_commits_once(core: BatchApplier, postgres: FakePostgres) -> None:
    applied = await core.apply([work("u1"), work("u2")])
    assert answers(applied) == [("u1", "migrated", None), ("u2", "migrated", None)]
    assert postgres.commits == 1 and postgres.rollbacks == 0
    assert len(postgres.tables.processed) == 2 and len(postgres.tables.audit) == 2


async def test_a_deadlock_is_retried_and_the_batch_then_commits(
    core: BatchApplier, postgres: FakePostgres
) -> None:
    postgres.refuse(when("lock_legacy_rows", StoreUnavailable("deadlock"), times=2))
    applied = await core.apply([work("u1")])
    assert answers(applied) == [("u1", "migrated", None)]
    assert postgres.rollbacks == 2 and postgres.commits == 1


async def test_a_spent_retry_budget_answers_database_unavailable_and_records_it(
    core: BatchApplier, postgres: FakePostgres
) -> None:
    postgres.refuse(when("lock_legacy_rows", StoreUnavailable("deadlock")))
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
    core: BatchApplier, postgres: FakePostgres
) -> None:
    postgres.tables.legacy["bad"] = row(user_id="bad", completed_steps=["account", "profile"])
    postgres.refuse(when("insert_sessions", StatementRefused("invalid byte"), user="'bad'"))
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
    core: BatchApplier, postgres: FakePostgres
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
    core: BatchApplier, postgres: FakePostgres
) -> None:
    postgres.up = False
    abandoned = asyncio.Event()
    task = asyncio.ensure_future(core.apply([work("u1")], abandoned=abandoned.is_set))
    await asyncio.sleep(0.01)
    abandoned.set()
    assert await asyncio.wait_for(task, timeout=5) is None
    assert postgres.commits == 0 and postgres.tables.processed == {}


async def test_a_record_answered_concurrently_elsewhere_is_redone_and_replayed(
    core: BatchApplier, postgres: FakePostgres
) -> None:
    conflict = AnsweredElsewhere("UniqueViolationError: duplicate key")
    postgres.refuse(when("insert_processed_records", conflict, times=1))
    applied = await core.apply([work("u1")])
    assert answers(applied) == [("u1", "migrated", None)]
    assert postgres.rollbacks == 1 and postgres.commits == 1


async def test_an_error_while_postgres_goes_away_waits_instead_of_failing_the_request(
    core: BatchApplier, postgres: FakePostgres
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
