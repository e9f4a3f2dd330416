"""What ``migrator verify`` concludes from one user's compact row (``verify_chunk.sql``). Pure.

PostgreSQL compares and hashes; this module turns its verdicts into named findings, each of a
kind that says who may act on it:

- ``postgres``: the session, its steps or its manifest differ from what the legacy snapshot
  plans: ``verify --repair`` rebuilds them from the snapshot;
- ``redis``: the mirror differs from PostgreSQL: ``verify --repair`` rewrites it from PostgreSQL;
- ``drift``: the legacy row changed after its snapshot (or after its rollback): an operator
  decides, nothing repairs it;
- ``unrepairable``: what a repair would start from is itself wrong or gone (a snapshot that no
  longer hashes to its recorded hash, a session deleted with its snapshot).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from agents.core.catalog import STEPS, STEPS_TOTAL
from schemas.legacy import LegacyStatus
from schemas.rows import Row
from schemas.session import StepStatus

Kind = Literal["postgres", "redis", "drift", "unrepairable"]
KINDS: tuple[Kind, ...] = ("postgres", "redis", "drift", "unrepairable")

ALL_STEPS = (1 << STEPS_TOTAL) - 1
REQUIRED_MASK = sum(1 << (step.number - 1) for step in STEPS if step.required)


@dataclass(frozen=True)
class Finding:
    user_id: str
    check: str
    kind: Kind
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class PlannedSession:
    """The session figures that follow from a session's step statuses (contract §6)."""

    status: str
    current_step: int | None
    steps_completed: int
    completion_percentage: float
    statuses: tuple[StepStatus, ...]


@cache
def planned_session(completed: int, skipped: int) -> PlannedSession:
    """The figures of a session whose steps in ``completed`` (bit n-1: step n) are completed,
    those in ``skipped`` skipped and the others pending. At most 2¹² × 2 distinct pairs occur, so
    each is computed once. The rule is contract §6's; ``tests/core/test_verify_rules.py`` holds
    it equal to the planner's for generated legacy rows."""
    statuses = tuple(
        StepStatus.COMPLETED
        if completed >> (step.number - 1) & 1
        else StepStatus.SKIPPED
        if skipped >> (step.number - 1) & 1
        else StepStatus.PENDING
        for step in STEPS
    )
    done = statuses.count(StepStatus.COMPLETED)
    pending = [
        step.number
        for step, status in zip(STEPS, statuses, strict=True)
        if status is StepStatus.PENDING
    ]
    status = (
        "completed"
        if completed & REQUIRED_MASK == REQUIRED_MASK
        else "in_progress"
        if done
        else "not_started"
    )
    return PlannedSession(
        status,
        min(pending) if pending else None,
        done,
        round(100 * done / STEPS_TOTAL, 2),
        statuses,
    )


def planned_masks(planned_completed: int, completed_legacy_user: bool) -> tuple[int, int]:
    """(completed, skipped) as the planner would write them: a legacy user who completed
    onboarding skips every step not completed; the others have them pending."""
    completed = planned_completed & ALL_STEPS
    return completed, (ALL_STEPS & ~completed) if completed_legacy_user else 0


def session_findings(row: Row) -> list[Finding]:
    """A user who holds a session: PostgreSQL against the legacy snapshot, and the legacy row
    against both. ``row`` is one row of ``verify_chunk.sql``."""
    user = row["user_id"]
    found: list[Finding] = []
    legacy_status = row["legacy_status"]
    if legacy_status is None:
        found.append(Finding(user, "legacy_row_present", "drift", "the legacy row is gone"))
    elif legacy_status != LegacyStatus.MIGRATED:
        found.append(
            Finding(user, "legacy_row_marked_migrated", "drift", f"legacy status={legacy_status}")
        )
    elif not row["legacy_unchanged"]:
        found.append(
            Finding(
                user,
                "legacy_row_unchanged_since_migration",
                "drift",
                "the legacy row differs from its snapshot or was written after the migration",
            )
        )
    if not row["snapshot_ok"]:
        found.append(
            Finding(
                user,
                "snapshot_hash",
                "unrepairable",
                "the legacy snapshot no longer hashes to legacy_sha256",
            )
        )
    if not row["identity_ok"]:
        found.append(
            Finding(user, "session_identity", "postgres", "user or workspace differs from snapshot")
        )
    completed, skipped = planned_masks(row["planned_completed"], bool(row["planned_skips"]))
    steps_ok = (
        row["step_rows"] == STEPS_TOTAL
        and row["present"] == ALL_STEPS
        and row["completed"] == completed
        and row["skipped"] == skipped
        and row["step_rows_ok"]
    )
    if not steps_ok:
        found.append(Finding(user, "steps", "postgres", _steps_detail(row, completed, skipped)))
    planned = planned_session(completed, skipped)
    stored = (
        row["status"],
        row["current_step"],
        row["steps_completed"],
        float(row["completion_percentage"]),
    )
    wanted = (
        planned.status,
        planned.current_step,
        planned.steps_completed,
        planned.completion_percentage,
    )
    if stored != wanted:
        found.append(
            Finding(
                user,
                "session",
                "postgres",
                f"stored status/current/completed/percentage {stored}, snapshot plans {wanted}",
            )
        )
    wants_manifest = planned.status == "completed"
    if row["manifests"] != int(wants_manifest) or not row["manifest_ok"]:
        found.append(
            Finding(
                user,
                "manifest",
                "postgres",
                f"{row['manifests']} manifest(s), the snapshot plans {int(wants_manifest)}"
                if row["manifests"] != int(wants_manifest)
                else "the manifest differs from what the snapshot plans",
            )
        )
    elif not row["checksum_ok"]:
        found.append(
            Finding(
                user,
                "manifest_checksum",
                "postgres",
                "checksum or token estimate differs from the manifest's canonical JSON",
            )
        )
    return found


def _steps_detail(row: Row, completed: int, skipped: int) -> str:
    if row["step_rows"] != STEPS_TOTAL or row["present"] != ALL_STEPS:
        return f"{row['step_rows']} step rows, 24 expected"
    if not row["step_rows_ok"]:
        return "a step's key, required flag or completed_at differs from the catalog/snapshot"
    return (
        f"statuses differ from the snapshot's plan at step(s) "
        f"{_bits((row['completed'] ^ completed) | (row['skipped'] ^ skipped))}"
    )


def _bits(mask: int) -> str:
    return ",".join(str(n + 1) for n in range(STEPS_TOTAL) if mask >> n & 1)


def sessionless_findings(
    row: Row, *, pointer: str | None, old_session_in_redis: bool
) -> list[Finding]:
    """A user without a session: rolled back (the legacy row as restored, nothing left in
    Redis), never migrated (the legacy row alone), or migrated and its session gone."""
    user = row["user_id"]
    effect = row["latest_effect"]
    legacy_status = row["legacy_status"]
    found: list[Finding] = []
    if effect == "migrated":
        found.append(
            Finding(
                user,
                "session_in_postgres",
                "unrepairable",
                "migrated, but the session (and its snapshot) is gone",
            )
        )
    elif legacy_status is None:
        found.append(Finding(user, "legacy_row_present", "drift", "no legacy row, no session"))
    elif legacy_status == LegacyStatus.MIGRATED:
        found.append(
            Finding(
                user,
                "legacy_row_not_marked_migrated",
                "drift",
                "the legacy row says migrated, PostgreSQL holds no session",
            )
        )
    elif effect == "rolled_back" and not row["restored_ok"]:
        found.append(
            Finding(
                user,
                "legacy_row_as_restored",
                "drift",
                "the legacy row differs from what the rollback restored",
            )
        )
    if pointer is not None:
        found.append(Finding(user, "no_redis_pointer", "redis", f"pointer={pointer}"))
    if old_session_in_redis:
        found.append(
            Finding(
                user,
                "no_redis_session",
                "redis",
                f"onboarding:session:{row['old_session_id']} still in Redis",
            )
        )
    return found


def redis_findings(
    user_id: str,
    session_id: str,
    *,
    pointer: str | None,
    document_present: bool,
    document_equal: bool,
) -> list[Finding]:
    """A user with a session: the mirror's pointer and document against PostgreSQL."""
    if pointer != session_id:
        return [Finding(user_id, "redis_pointer", "redis", f"pointer={pointer}")]
    if not document_present:
        return [Finding(user_id, "redis_session", "redis", "the session document is missing")]
    if not document_equal:
        return [Finding(user_id, "redis_equals_postgres", "redis", "the document differs")]
    return []


@dataclass
class Tally:
    """A verification's running figures: users checked, users with findings, findings by
    check and by kind (what the report and ``runs show`` print)."""

    checked: int = 0
    mismatched: int = 0
    by_check: Counter[str] | None = None

    def __post_init__(self) -> None:
        if self.by_check is None:
            self.by_check = Counter()

    def add(self, checked: int, findings: Sequence[Finding]) -> None:
        assert self.by_check is not None
        self.checked += checked
        self.mismatched += len({f.user_id for f in findings})
        self.by_check.update(f.check for f in findings)


def by_user(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    """The report's ``users``: each user with findings, in user id order, and their findings."""
    grouped: dict[str, list[Finding]] = {}
    for finding in findings:
        grouped.setdefault(finding.user_id, []).append(finding)
    return [
        {"user_id": user, "findings": [f.as_dict() for f in sorted(items, key=lambda f: f.check)]}
        for user, items in sorted(grouped.items())
    ]


def by_kind(findings: Iterable[Finding]) -> dict[str, int]:
    """Users per kind of finding (a user with two kinds counts in both)."""
    users: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for finding in findings:
        users[finding.kind].add(finding.user_id)
    return {kind: len(found) for kind, found in users.items()}
