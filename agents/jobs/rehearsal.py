"""The rollback rehearsal of ``migrator preflight``: migrate, validate, roll back and verify by
hash a sample of real legacy users with the worker's own batch applier, inside one PostgreSQL
transaction that is rolled back at the end. Nothing is kept and nothing is published.

Why the real applier on real rows: the rollout's failures come from data nobody has looked at
(a step name the catalog does not know, a row a constraint refuses, a snapshot that does not
restore byte for byte). Running the code the workers run on those rows, in a transaction that
is never committed, finds them before a single user is touched.

Redis is not written at all: the applier's mirror is a recorder here. A Redis write cannot join
PostgreSQL's rollback, and undoing it afterwards would race with the workers (their mirror
repair and rebuild read and prune the same keys) and leave stray sessions behind if the
rehearsal died between write and undo. What the rehearsal checks instead is what Redis would
have been given: the recorded documents are held against PostgreSQL by the same checks as
``migrator validate`` (``redis_equals_postgres`` and the rest). Whether Redis answers is the
preflight's own first check.

The rehearsal holds the sampled legacy rows locked until its rollback (a second or so for a
hundred users): a worker migrating one of them meanwhile waits for it, as it waits for another
batch.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from agents.batch_applier import BatchApplier
from agents.core.decide import Work
from agents.core.retry import RetryPolicy
from agents.jobs.validation import migrated_checks
from agents.stores import postgres
from agents.stores.errors import StoreUnavailable
from agents.stores.postgres import Conn
from agents.stores.postgres_batch import PostgresTransaction
from agents.stores.postgres_sandbox import SandboxStore
from schemas.events import MigrationRequest, Outcome
from schemas.legacy import LegacyRow, UnreadableLegacyRow

REQUESTED_BY = "migrator-preflight"
# Codes of the rehearsal's own findings, beside the contract's error codes.
INVALID_USER_ID = "invalid_user_id"
NOT_RESTORED = "legacy_row_not_restored"
HASH_MISMATCH = "rollback_hash_mismatch"
NOT_ANSWERED = "not_answered"


class RecordingMirror:
    """``protocol.SessionMirror`` that writes nothing: it keeps the last document per user."""

    def __init__(self) -> None:
        self.documents: dict[str, Mapping[str, Any]] = {}
        self.cleared: set[str] = set()

    async def write_sessions(
        self,
        documents: Sequence[Mapping[str, Any]],
        *,
        stale_sessions: Sequence[str],
        users_without_session: Sequence[str],
    ) -> None:
        for document in documents:
            self.documents[str(document["user_id"])] = document
        for user in users_without_session:
            self.documents.pop(user, None)
            self.cleared.add(user)


@dataclass
class RehearsalReport:
    """The sampled users, those that went through every step, and the others by code."""

    sampled: list[str]
    passed: list[str] = field(default_factory=list)
    failures: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    seconds: float = 0.0


Action = Literal["migrate", "rollback"]


def _works(users: Sequence[str], action: Action, now: datetime) -> list[Work]:
    return [
        Work(
            MigrationRequest(
                request_id=uuid.uuid4(),
                user_id=user,
                action=action,
                requested_by=REQUESTED_BY,
                requested_at=now,
                reason="preflight rehearsal (rolled back)",
            )
        )
        for user in users
    ]


def _code(outcome: Outcome) -> str:
    error = getattr(outcome, "error", None)
    return error.code.value if error is not None else f"unexpected_{outcome.outcome}"


async def rehearse(
    conn: Conn, users: Sequence[str], *, app_id: str, sample: int = 0
) -> RehearsalReport:
    """Rehearse ``users`` (or ``sample`` random users a rollout would migrate, when ``users``
    is empty) on ``conn``, inside a transaction rolled back before returning."""
    started = datetime.now(UTC)
    transaction = conn.transaction()
    await transaction.start()
    try:
        chosen = list(users) or await postgres.rehearsal_sample(conn, sample)
        report = RehearsalReport(sampled=chosen)
        await _rehearse(conn, report, app_id=app_id)
    finally:
        await transaction.rollback()
    report.seconds = (datetime.now(UTC) - started).total_seconds()
    report.failures = dict(report.failures)
    return report


async def _rehearse(conn: Conn, report: RehearsalReport, *, app_id: str) -> None:
    valid: list[str] = []
    for user in report.sampled:
        try:
            MigrationRequest(request_id=uuid.uuid4(), user_id=user)
            valid.append(user)
        except ValidationError:
            report.failures[INVALID_USER_ID].append(user)
    before = await PostgresTransaction(conn).lock_legacy_rows(valid)
    mirror = RecordingMirror()
    # The rehearsal's answers are kept under an app id of their own: none of the worker's
    # records or counters is locked or read (and all of it is rolled back anyway).
    applier = BatchApplier(
        SandboxStore(conn),
        mirror,
        retry=RetryPolicy(max_retries=0),
        app_id=f"{app_id}-preflight",
    )

    async def apply(works: Sequence[Work]) -> list[Outcome]:
        # PostgreSQL down: abandoned at once (a command does not wait out an outage).
        applied = await applier.apply(works, abandoned=lambda: True)
        if applied is None:
            raise StoreUnavailable("PostgreSQL went away during the rehearsal")
        return applied.outcomes

    now = datetime.now(UTC)
    migrated: list[str] = []
    migrations = _works(valid, "migrate", now)
    for work, outcome in zip(migrations, await apply(migrations), strict=True):
        user = work.request.user_id
        if outcome.outcome != "migrated":
            report.failures[_code(outcome)].append(user)
            continue
        failed = await _validate(conn, user, mirror)
        if failed:
            report.failures[f"check:{failed}"].append(user)
            continue
        migrated.append(user)
    rollbacks = _works(migrated, "rollback", now)
    outcomes = await apply(rollbacks)
    after = await PostgresTransaction(conn).lock_legacy_rows(migrated)
    for work, outcome in zip(rollbacks, outcomes, strict=True):
        user = work.request.user_id
        if outcome.outcome != "rolled_back":
            report.failures[_code(outcome)].append(user)
        elif not getattr(outcome, "matches_snapshot", False):
            report.failures[HASH_MISMATCH].append(user)
        elif _columns(after.get(user)) != _columns(before.get(user)):
            report.failures[NOT_RESTORED].append(user)
        else:
            report.passed.append(user)


async def _validate(conn: Conn, user: str, mirror: RecordingMirror) -> str | None:
    """The first check of ``migrator validate`` the migrated user fails, if any, with the
    document Redis would have been given in place of Redis."""
    rows = await postgres.validation_rows_on(conn, user)
    document = mirror.documents.get(user)
    pointer = str(document["session_id"]) if document is not None else None
    for check in migrated_checks(rows, pointer, document):
        if not check.ok:
            return check.name
    return None


def _columns(row: LegacyRow | UnreadableLegacyRow | None) -> dict[str, Any] | str | None:
    if isinstance(row, UnreadableLegacyRow):
        return row.problem  # never restored: a row that cannot be read does not migrate
    return row.model_dump() if row is not None else None
