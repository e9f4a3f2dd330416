"""Per-request decisions and the per-user ordering of a batch."""

from __future__ import annotations

import uuid
from typing import Any

from support.factories import NOW, row

from agents.core.decide import (
    AlreadyMigrated,
    Duplicate,
    Failed,
    Migrate,
    Replayed,
    RollBack,
    Work,
    decide,
    waves,
)
from agents.core.state import LedgerEntry, StoredSession
from schemas.events import ErrorCode, MigrationRequest, parse_outcome_json

SESSION = StoredSession(
    session_id=uuid.uuid4(),
    user_id="user-1",
    workspace_id=None,
    status="in_progress",
    current_step=3,
    completion_percentage=8.33,
    steps_completed=2,
    legacy_snapshot={},
    legacy_sha256="0" * 64,
    bcm_version=None,
    bcm_checksum=None,
    bcm_token_estimate=None,
)
# The ledger hands the outcome back as the bytes it holds: the outcome first published.
STORED = (
    b'{"event_id": "00000000-0000-0000-0000-000000000001", "request_id":'
    b' "00000000-0000-0000-0000-000000000002", "user_id": "user-1", "action": "migrate",'
    b' "outcome": "migrated", "processed_at": "2026-12-05T04:00:00Z"}'
)


def work(
    action: str = "migrate", user: str = "user-1", request_id: Any = None, offset: int | None = 7
) -> Work:
    request = MigrationRequest(
        request_id=request_id or uuid.uuid4(),
        user_id=user,
        action=action,
    )
    return Work(request, 0, offset)


def ledger_for(
    w: Work, *, offset: int | None = 7, user: str = "user-1", action: str = "migrate"
) -> LedgerEntry:
    return LedgerEntry(w.request.request_id, user, action, STORED, 0, offset)


def test_the_same_record_again_replays_its_stored_outcome() -> None:
    w = work()
    assert decide(w, legacy=None, session=None, ledger=ledger_for(w), now=NOW) == Replayed(
        parse_outcome_json(STORED)
    )


def test_another_record_with_a_done_request_id_is_a_duplicate() -> None:
    w = work(offset=99)
    decision = decide(w, legacy=None, session=None, ledger=ledger_for(w), now=NOW)
    assert isinstance(decision, Duplicate)
    direct = work(offset=None)
    assert isinstance(
        decide(direct, legacy=None, session=None, ledger=ledger_for(direct), now=NOW), Duplicate
    )


def test_a_request_id_reused_for_another_user_or_action_is_refused() -> None:
    w = work()
    for entry in (ledger_for(w, user="other"), ledger_for(w, action="rollback")):
        decision = decide(w, legacy=row(), session=None, ledger=entry, now=NOW)
        assert isinstance(decision, Failed) and decision.code is ErrorCode.REQUEST_ID_CONFLICT


def test_rollback_needs_a_session() -> None:
    decision = decide(work("rollback"), legacy=row(), session=None, ledger=None, now=NOW)
    assert isinstance(decision, Failed) and decision.code is ErrorCode.NOT_MIGRATED
    assert decide(work("rollback"), legacy=None, session=SESSION, ledger=None, now=NOW) == (
        RollBack(SESSION)
    )


def test_migrate_of_a_migrated_user_is_already_done() -> None:
    assert decide(
        work(), legacy=row(status="migrated"), session=SESSION, ledger=None, now=NOW
    ) == AlreadyMigrated(SESSION)


def test_migrate_failures() -> None:
    missing = decide(work(), legacy=None, session=None, ledger=None, now=NOW)
    assert isinstance(missing, Failed) and missing.code is ErrorCode.USER_NOT_FOUND
    orphan = decide(work(), legacy=row(status="migrated"), session=None, ledger=None, now=NOW)
    assert isinstance(orphan, Failed) and orphan.code is ErrorCode.INVALID_LEGACY_DATA
    unknown = decide(work(), legacy=row(completed_steps=["x"]), session=None, ledger=None, now=NOW)
    assert isinstance(unknown, Failed) and unknown.code is ErrorCode.UNKNOWN_LEGACY_STEP


def test_migrate_plans_with_a_session_id_derived_from_the_request() -> None:
    w = work()
    first = decide(w, legacy=row(), session=None, ledger=None, now=NOW)
    second = decide(w, legacy=row(), session=None, ledger=None, now=NOW)
    assert isinstance(first, Migrate) and first == second


def test_waves_keep_per_user_order_and_separate_repeated_request_ids() -> None:
    a1, b1, a2, c1, a3 = (
        work(user="a"),
        work(user="b"),
        work(user="a"),
        work(user="c"),
        work(user="a"),
    )
    repeat = work(user="d", request_id=b1.request.request_id)
    result = waves([a1, b1, a2, c1, a3, repeat])
    assert result == [[a1, b1, c1], [a2, repeat], [a3]]
    assert waves([]) == []
