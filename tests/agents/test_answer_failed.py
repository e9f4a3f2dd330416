"""``BatchApplier.answer_failed`` on the in-memory stores: requests answered ``failed`` with a
code and without being decided (a cancelled run's), recorded and counted like any answer, with
no user read or touched. Also ``streams.migrate_agent.apply_cancelling``, which hands a batch's
cancelled requests to it and the others to ``apply``: the agent's path with real stores.
"""

from __future__ import annotations

import asyncio
import copy

from support.applier_scenarios import answers, work
from support.fake_stores import FakePostgres, FakeRedis

from agents.batch_applier import BatchApplier
from agents.core import control_state
from agents.core.control_state import ControlState, cancel_key
from agents.core.decide import Work
from schemas.events import ErrorCode, MigrationRequest
from streams.migrate_agent import apply_cancelling

USERS = ("u1", "u2", "u3", "u4")


def in_run(user: str, run_id: str, offset: int) -> Work:
    request = MigrationRequest.model_validate(
        {"request_id": f"00000000-0000-4000-8000-{offset:012d}", "user_id": user, "run_id": run_id}
    )
    return Work(request, 0, offset, None, f"digest-{offset}".encode())


async def test_answers_failed_without_touching_any_user_and_records_the_answer(
    core: BatchApplier, postgres: FakePostgres, redis: FakeRedis
) -> None:
    legacy_before = copy.deepcopy(postgres.tables.legacy)
    batch = [work("u1"), work("u2", "rollback"), work("u3", dry_run=True)]
    applied = await core.answer_failed(batch, ErrorCode.CANCELLED, lambda w: f"no: {w.offset}")
    assert answers(applied) == [(u, "failed", "cancelled") for u in ("u1", "u2", "u3")]
    assert applied is not None
    for outcome, given in zip(applied.outcomes, batch, strict=True):
        assert outcome.error is not None and outcome.error.retryable
        assert outcome.error.message == f"no: {given.offset}"
        assert outcome.request == given.request.model_dump(mode="json")  # for a replay
    # Nothing of any user was read or written: only the answer.
    assert postgres.tables.legacy == legacy_before
    assert postgres.tables.sessions == {} and postgres.tables.ledger == {}
    assert redis.writes == 0 and postgres.tables.mirror_pending == set()
    touched = {"lock_legacy_rows", "lock_sessions", "ledger_entries", "insert_sessions"}
    assert not touched & set(postgres.statements)
    # Recorded like any answer: the audit log, the record's answer, the counters.
    assert [(a.outcome, a.error_code) for a in postgres.tables.audit] == [
        ("failed", "cancelled")
    ] * 3
    assert len(postgres.tables.processed) == 3
    totals = applied.totals[0]
    assert (totals["requested"], totals["failed"], totals["dry_run"]) == (3, 2, 1)
    assert totals["failed_by_code"] == {"cancelled": 2}  # a dry run counts in dry_run only


async def test_a_record_answered_before_keeps_its_first_answer(
    core: BatchApplier, postgres: FakePostgres
) -> None:
    """A batch redone after the cancel arrived: what was answered stays answered as it was, and
    what the cancel answered is given again, byte for byte, and counted once."""
    migrated, waiting = work("u1"), work("u2")
    first = await core.apply([migrated])
    assert answers(first) == [("u1", "migrated", None)]
    applied = await core.answer_failed([migrated, waiting], ErrorCode.CANCELLED, lambda w: "x")
    assert answers(applied) == [("u1", "migrated", None), ("u2", "failed", "cancelled")]
    again = await core.answer_failed([migrated, waiting], ErrorCode.CANCELLED, lambda w: "y")
    assert applied is not None and again is not None
    assert [a.json for a in again.answers] == [a.json for a in applied.answers]
    assert "u1" in postgres.tables.sessions  # the earlier migration stands
    stored = postgres.tables.counters[("test", 0)]
    assert (stored["migrated"], stored["failed"]) == (1, 1)


async def test_postgres_down_is_waited_out_and_an_abandoned_batch_writes_nothing(
    core: BatchApplier, postgres: FakePostgres
) -> None:
    postgres.up = False
    task = asyncio.ensure_future(core.answer_failed([work("u1")], ErrorCode.CANCELLED, str))
    await asyncio.sleep(0.02)
    assert not task.done() and core.waiting_for is not None
    postgres.up = True
    assert answers(await asyncio.wait_for(task, 5)) == [("u1", "failed", "cancelled")]

    postgres.up = False
    gone = asyncio.Event()
    task = asyncio.ensure_future(
        core.answer_failed([work("u2")], ErrorCode.CANCELLED, str, abandoned=gone.is_set)
    )
    await asyncio.sleep(0.02)
    gone.set()
    assert await asyncio.wait_for(task, 5) is None
    postgres.up = True
    assert len(postgres.tables.processed) == 1


async def test_a_batch_answers_its_cancelled_requests_cancelled_and_the_others_as_usual(
    core: BatchApplier, postgres: FakePostgres, redis: FakeRedis
) -> None:
    """Records of the cancelled run before its boundary (offset 13) are answered cancelled;
    another run's, and the cancelled run's published after the cancel, are migrated."""
    state = control_state.apply(
        ControlState(),
        cancel_key("wrong"),
        {"at": "2026-11-23T10:00:00Z", "by": "ops", "before": {"0": 13}},
    )
    batch = [
        in_run("u1", "wrong", 10),
        in_run("u2", "right", 11),
        in_run("u3", "wrong", 12),
        in_run("u4", "wrong", 13),  # published after the cancel (a replay, say)
    ]
    applied = await apply_cancelling(core, batch, [], state, abandoned=lambda: False)
    assert answers(applied) == [
        ("u1", "failed", "cancelled"),
        ("u2", "migrated", None),
        ("u3", "failed", "cancelled"),
        ("u4", "migrated", None),
    ]
    assert applied is not None
    failure = applied.outcomes[0].error
    assert failure is not None and "run wrong was cancelled" in failure.message
    assert set(postgres.tables.sessions) == {"u2", "u4"} == set(redis.users)
    assert {u: r.status for u, r in postgres.tables.legacy.items()} == {
        "u1": "in_progress",
        "u2": "migrated",
        "u3": "in_progress",
        "u4": "migrated",
    }
    # The batch's totals are the partition's after both transactions.
    assert applied.totals[0]["migrated"] == 2 and applied.totals[0]["failed"] == 2
    assert postgres.commits == 2  # the cancelled requests' transaction, then the others'

    # Redone (a crash before the publish): the same answers, nothing decided again.
    again = await apply_cancelling(core, batch, [], state, abandoned=lambda: False)
    assert again is not None
    assert [a.json for a in again.answers] == [a.json for a in applied.answers]
    assert postgres.tables.counters[("test", 0)]["requested"] == 4

    # Without a cancel covering the batch, one transaction as ever.
    commits = postgres.commits
    plain = [in_run("u1", "right", 20)]
    assert answers(await apply_cancelling(core, plain, [], state, abandoned=lambda: False)) == [
        ("u1", "migrated", None)
    ]
    assert postgres.commits == commits + 1
