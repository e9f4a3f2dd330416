"""``migrator validate USER_ID`` and the web API's validate: which state a user is in, checked.

Three states, each with its invariants: ``migrated`` (a session in PostgreSQL and Redis, equal,
consistent with its steps, manifest and snapshot), ``rolled_back`` (the legacy row back as
snapshotted, nothing of the session left) and ``never_migrated`` (the legacy row alone). A user
PostgreSQL knows nothing about is ``UnknownUser``, not a failed check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agents.core.checks import (
    Check,
    check_legacy_unchanged,
    check_never_migrated,
    check_rolled_back,
    check_session,
)
from agents.core.documents import document_from_row
from agents.stores import postgres, redis_mirror
from agents.stores.postgres import Pool
from agents.stores.redis_mirror import Client
from schemas.legacy import LegacyRow

State = Literal["migrated", "rolled_back", "never_migrated"]


class UnknownUser(LookupError):
    """No legacy row, no session and no migration of this user: nothing to validate."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f"unknown user {user_id!r}: no legacy row, no session, no migration")
        self.user_id = user_id


@dataclass(frozen=True)
class ValidationReport:
    user_id: str
    state: State
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "state": self.state,
            "migrated": self.state == "migrated",
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


# How long a confirming read waits for a writer of the user (a batch holds its rows for one
# transaction, well under a second unless PostgreSQL is in trouble).
CONFIRM_WAIT_S = 10.0


async def validate_user(
    pool: Pool, client: Client, user_id: str, *, confirm_wait_s: float = CONFIRM_WAIT_S
) -> ValidationReport:
    """The user's state, checked. A first read takes no lock; a failed check is read again
    holding the user's legacy row, and that second report is the answer. A batch writes Redis
    before PostgreSQL commits (both under the row lock), so a lock-free read can land between
    the two: a rollback's key already deleted, its session not yet. That is a write in flight,
    not a mismatch, and it must not be reported as one (``UserBusy`` if the lock never comes)."""
    report = await _checked(client, user_id, await postgres.validation_rows(pool, user_id))
    if report.ok:
        return report
    async with postgres.user_held(pool, user_id, confirm_wait_s) as conn:
        return await _checked(client, user_id, await postgres.validation_rows_on(conn, user_id))


async def _checked(client: Client, user_id: str, rows: postgres.ValidationRows) -> ValidationReport:
    pointer, redis_doc = await redis_mirror.read_session(client, user_id)
    legacy_status = rows.legacy.status if rows.legacy is not None else None
    effect = rows.latest_effect
    if rows.session is not None or (effect is not None and effect["outcome"] == "migrated"):
        return ValidationReport(user_id, "migrated", migrated_checks(rows, pointer, redis_doc))
    if effect is not None:  # the latest effect is a rollback
        event = effect["event"]
        checks = check_rolled_back(
            legacy_status=legacy_status,
            legacy_sha256_now=rows.legacy.snapshot_sha256() if rows.legacy else None,
            rollback=event,
            redis_pointer=pointer,
            redis_session_present=await redis_mirror.session_exists(
                client, str(event.get("session_id"))
            ),
        )
        return ValidationReport(user_id, "rolled_back", checks)
    if rows.legacy is None:
        raise UnknownUser(user_id)
    checks = check_never_migrated(legacy_status=legacy_status, redis_pointer=pointer)
    return ValidationReport(user_id, "never_migrated", checks)


def migrated_checks(
    rows: postgres.ValidationRows, pointer: str | None, redis_doc: object
) -> list[Check]:
    """The checks of a migrated user, with Redis's pointer and document as read (or, for the
    preflight's rehearsal, as they would have been written)."""
    postgres_doc = document_from_row(rows.session) if rows.session is not None else None
    detail = rows.snapshot
    snapshot = detail["legacy_snapshot"] if detail else None
    actual = LegacyRow.from_snapshot(snapshot).snapshot_sha256() if snapshot else None
    checks = check_session(
        postgres_doc=postgres_doc,
        redis_doc=redis_doc if isinstance(redis_doc, dict) else None,
        redis_pointer=pointer,
        manifests=detail["manifests"] if detail else [],
        snapshot=snapshot,
        snapshot_sha256_recorded=detail["legacy_sha256"] if detail else None,
        snapshot_sha256_actual=actual,
        legacy_status=rows.legacy.status if rows.legacy is not None else None,
    )
    if rows.session is not None:
        checks.append(
            check_legacy_unchanged(
                legacy=rows.legacy.model_dump() if rows.legacy is not None else None,
                snapshot=snapshot,
                migrated_at=rows.session["created_at"],
            )
        )
    return checks
