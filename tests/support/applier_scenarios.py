"""The batch applier's scenarios, written once and run on two store pairs (FastStream style).

``tests/agents/test_batch_applier.py`` runs them on the in-memory fakes (milliseconds) and
``tests/integration/test_batch_applier_on_servers.py`` on the real PostgreSQL and Redis of the
stack. Each gives a ``servers`` fixture implementing ``Servers``: how to seed a legacy row and
how to look at what the stores hold, the only things that differ. Failure injections that only
the fakes can make (a deadlock on the third statement, a refused row) stay in the fakes' module;
those only real servers can make (a killed backend, two workers racing) in the servers' module.
"""

from __future__ import annotations

import uuid
from itertools import count
from typing import Any, Protocol

from agents.batch_applier import BatchApplier
from agents.batch_transaction import Applied
from agents.core.decide import Work
from schemas.events import MigrationRequest

_offsets = count(10**6)


def work(
    user_id: str,
    action: str = "migrate",
    *,
    dry_run: bool = False,
    request_id: uuid.UUID | None = None,
) -> Work:
    """A request from a record at a position of its own (partition 0)."""
    request = MigrationRequest(
        request_id=request_id or uuid.uuid4(), user_id=user_id, action=action, dry_run=dry_run
    )
    offset = next(_offsets)
    return Work(request, 0, offset, None, f"digest-{offset}".encode())


def answers(applied: Applied | None) -> list[tuple[str, str, str | None]]:
    assert applied is not None
    return [
        (o.user_id, o.outcome, o.error.code.value if o.error else None) for o in applied.outcomes
    ]


class Servers(Protocol):
    """A store pair and how to look into it. Users are made unique by the caller."""

    def applier(self, *, redis_dead: bool = False) -> BatchApplier:
        """A new applier on these stores (its own app id), or with a Redis that refuses."""
        ...

    async def add_legacy(self, user: str, **columns: Any) -> Any:
        """Seed a valid legacy row in progress (unless ``columns`` say otherwise); return it as
        ``legacy`` reads it."""
        ...

    async def legacy(self, user: str) -> Any: ...

    async def sessions(self, user: str) -> int: ...

    async def audit(self, user: str) -> list[tuple[str, str]]:
        """``(action, outcome)`` of the user's audit rows, oldest first."""
        ...

    async def pointer(self, user: str) -> str | None:
        """The session id Redis holds for the user."""
        ...

    async def session_mirrored(self, session_id: uuid.UUID | None) -> bool: ...

    async def drop_mirror(self, user: str) -> None:
        """Delete the user's keys from Redis behind the applier's back."""
        ...

    async def mirror_pending(self, user: str) -> bool: ...

    async def stored_counters(self, applier: BatchApplier) -> dict[str, Any]:
        """The applier's partition 0 counters as PostgreSQL holds them."""
        ...


class SharedScenarios:
    """Subclassed by a ``Test…`` class that provides the ``servers`` and ``unique`` fixtures."""

    async def test_a_batch_answers_in_order_and_mirrors_every_user(
        self, servers: Servers, unique: str
    ) -> None:
        users = [f"u1-{unique}", f"u2-{unique}"]
        for user in users:
            await servers.add_legacy(user)
        applied = await servers.applier().apply([work(user) for user in users])
        assert answers(applied) == [(user, "migrated", None) for user in users]
        assert applied is not None and applied.totals[0]["migrated"] == 2
        for user, outcome in zip(users, applied.outcomes, strict=True):
            assert await servers.sessions(user) == 1
            assert await servers.pointer(user) == str(outcome.session_id)
            assert await servers.audit(user) == [("migrate", "migrated")]
        # The JSON handed over with each answer is the outcome's, encoded once.
        assert [a.outcome.model_dump_json().encode() for a in applied.answers] == [
            a.json for a in applied.answers
        ]

    async def test_a_rollback_restores_the_exact_legacy_row(
        self, servers: Servers, unique: str
    ) -> None:
        user = f"back-{unique}"
        original = await servers.add_legacy(user)
        applier = servers.applier()
        [migrated] = (await applier.apply([work(user)]) or Applied([])).outcomes
        assert (await servers.legacy(user))["status"] == "migrated"
        applied = await applier.apply([work(user, "rollback")])
        assert answers(applied) == [(user, "rolled_back", None)]
        assert applied is not None and applied.outcomes[0].matches_snapshot is True
        assert await servers.legacy(user) == original
        assert await servers.sessions(user) == 0
        assert await servers.pointer(user) is None
        assert not await servers.session_mirrored(migrated.session_id)
        assert await servers.audit(user) == [("migrate", "migrated"), ("rollback", "rolled_back")]

    async def test_repeats_change_nothing_and_say_already_done(
        self, servers: Servers, unique: str
    ) -> None:
        user = f"repeat-{unique}"
        await servers.add_legacy(user)
        applier = servers.applier()
        first_work = work(user)
        [first] = (await applier.apply([first_work]) or Applied([])).outcomes
        [redelivered] = (await applier.apply([first_work]) or Applied([])).outcomes
        duplicate_work = work(user, request_id=first_work.request.request_id)
        [duplicate] = (await applier.apply([duplicate_work]) or Applied([])).outcomes
        [again] = (await applier.apply([work(user)]) or Applied([])).outcomes
        assert redelivered == first
        assert duplicate.already_done and duplicate.outcome == "migrated"
        assert duplicate.session_id == first.session_id and duplicate.event_id != first.event_id
        assert again.already_done and again.session_id == first.session_id
        assert await servers.sessions(user) == 1

    async def test_one_bad_user_never_fails_the_others(self, servers: Servers, unique: str) -> None:
        good = [f"good{i}-{unique}" for i in range(3)]
        for user in good:
            await servers.add_legacy(user)
        bad_step, bad_type = f"badstep-{unique}", f"badtype-{unique}"
        await servers.add_legacy(bad_step, completed_steps=["account", "wizard"])
        await servers.add_legacy(bad_type, answers={"goals": "grow"})
        batch = [
            work(good[0]),
            work(f"missing-{unique}"),
            work(bad_step),
            work(good[1]),
            work(f"notmigrated-{unique}", "rollback"),
            work(bad_type),
            work(good[2]),
        ]
        applied = await servers.applier().apply(batch)
        assert [(o, code) for _, o, code in answers(applied)] == [
            ("migrated", None),
            ("failed", "user_not_found"),
            ("failed", "unknown_legacy_step"),
            ("migrated", None),
            ("failed", "not_migrated"),
            ("failed", "invalid_legacy_data"),
            ("migrated", None),
        ]
        assert applied is not None
        failed = applied.outcomes[1]
        assert failed.error is not None and failed.error.retryable is False
        assert failed.request is not None and failed.request["user_id"] == f"missing-{unique}"
        assert (await servers.legacy(bad_step))["status"] == "in_progress"

    async def test_a_failure_reported_before_is_marked_a_repeat(
        self, servers: Servers, unique: str
    ) -> None:
        """The failure budget judges new failures only: a user failing for good again is a
        repeat; the first failure, a dry run's and another user's are not."""
        bad, other, good = f"badstep-{unique}", f"badtype-{unique}", f"good-{unique}"
        await servers.add_legacy(bad, completed_steps=["account", "wizard"])
        await servers.add_legacy(other, answers={"goals": "grow"})
        await servers.add_legacy(good)
        applier = servers.applier()
        first = await applier.apply([work(good), work(bad), work(bad, dry_run=True)])
        assert first is not None and first.repeats == frozenset()
        again = await applier.apply([work(other), work(bad, dry_run=True), work(bad), work(other)])
        assert again is not None
        assert [(o, code) for _, o, code in answers(again)] == [
            ("failed", "invalid_legacy_data"),
            ("failed", "unknown_legacy_step"),
            ("failed", "unknown_legacy_step"),
            ("failed", "invalid_legacy_data"),
        ]
        # other's first failure is new, its second (a later wave) repeats it; bad repeats.
        assert again.repeats == frozenset({2, 3})
        assert [o.user_id for o in again.judged] == [other, bad]

    async def test_a_dry_run_writes_only_the_audit_log(self, servers: Servers, unique: str) -> None:
        user = f"dry-{unique}"
        before = await servers.add_legacy(user, status="completed")
        applier = servers.applier()
        [outcome] = (await applier.apply([work(user, dry_run=True)]) or Applied([])).outcomes
        assert outcome.dry_run and outcome.outcome == "migrated" and outcome.bcm is not None
        assert await servers.legacy(user) == before
        assert await servers.sessions(user) == 0 and await servers.pointer(user) is None
        assert await servers.audit(user) == [("migrate", "migrated")]
        await applier.apply([work(user)])
        applied = await applier.apply([work(user, "rollback", dry_run=True)])
        [dry_rollback] = (applied or Applied([])).outcomes
        assert dry_rollback.outcome == "rolled_back" and dry_rollback.matches_snapshot is True
        assert (await servers.legacy(user))["status"] == "migrated"
        assert await servers.sessions(user) == 1 and await servers.pointer(user) is not None

    async def test_requests_of_one_user_apply_in_order_within_a_batch(
        self, servers: Servers, unique: str
    ) -> None:
        user = f"order-{unique}"
        await servers.add_legacy(user)
        applied = await servers.applier().apply([work(user), work(user, "rollback"), work(user)])
        outcomes = (applied or Applied([])).outcomes
        assert [o.outcome for o in outcomes] == ["migrated", "rolled_back", "migrated"]
        assert outcomes[0].session_id != outcomes[2].session_id
        assert await servers.pointer(user) == str(outcomes[2].session_id)
        assert not await servers.session_mirrored(outcomes[0].session_id)
        assert await servers.session_mirrored(outcomes[2].session_id)

    async def test_redis_down_answers_migrated_and_marks_the_users_pending(
        self, servers: Servers, unique: str
    ) -> None:
        users = [f"cache{i}-{unique}" for i in range(2)]
        for user in users:
            await servers.add_legacy(user)
        broken = servers.applier(redis_dead=True)
        applied = await broken.apply([work(user) for user in users])
        # PostgreSQL committed, so the answer is the success; the mirror is owed, not lost.
        assert answers(applied) == [(user, "migrated", None) for user in users]
        assert applied is not None and applied.mirror_pending == 2 and broken.redis_down
        for user in users:
            assert await servers.mirror_pending(user)
            assert await servers.pointer(user) is None

    async def test_a_request_seen_again_rewrites_its_users_mirror_from_postgres(
        self, servers: Servers, unique: str
    ) -> None:
        user = f"seen-{unique}"
        await servers.add_legacy(user)
        applier = servers.applier()
        first = work(user)
        [migrated] = (await applier.apply([first]) or Applied([])).outcomes
        await servers.drop_mirror(user)
        # The same request republished (another record): answered as before, mirror repaired.
        again = await applier.apply([work(user, request_id=first.request.request_id)])
        assert answers(again) == [(user, "migrated", None)]
        assert await servers.pointer(user) == str(migrated.session_id)
        assert await servers.session_mirrored(migrated.session_id)

    async def test_a_redone_batch_answers_exactly_as_the_first_time(
        self, servers: Servers, unique: str
    ) -> None:
        """Redoing a batch (crash, rebalance, fenced producer) must not decide anything again:
        a dry run decided before the user's later rollback would now say ``not_migrated``, and
        a [rollback, migrate] pair would now say ``rolled_back`` for a user left migrated."""
        migrated, fresh = f"redo-m-{unique}", f"redo-f-{unique}"
        await servers.add_legacy(migrated)
        await servers.add_legacy(fresh)
        applier = servers.applier()
        await applier.apply([work(migrated)])
        batch = [
            work(migrated, "rollback", dry_run=True),
            work(migrated, "rollback"),
            work(fresh, "rollback"),
            work(fresh),
        ]
        first = await applier.apply(batch)
        again = await applier.apply(batch)
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
        stored = await servers.stored_counters(applier)
        assert stored["requested"] == 5 and stored["dry_run"] == 1
        assert await servers.sessions(fresh) == 1

    async def test_a_position_holding_another_record_is_answered_afresh(
        self, servers: Servers, unique: str
    ) -> None:
        user = f"recreated-{unique}"
        await servers.add_legacy(user)
        applier = servers.applier()
        first = work(user, "rollback")
        assert answers(await applier.apply([first])) == [(user, "failed", "not_migrated")]
        other = Work(
            MigrationRequest(request_id=uuid.uuid4(), user_id=user),
            first.partition,
            first.offset,
            None,
            b"another record",
        )
        assert answers(await applier.apply([other])) == [(user, "migrated", None)]
