"""The named consistency checks behind ``migrator validate``: pure functions over loaded data.

Each check says what it verified and, when it fails, what it found, so an operator can act on
the answer without reading code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.core.catalog import STEPS, STEPS_TOTAL
from agents.core.manifest import manifest_checksum
from schemas.legacy import LegacyStatus


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


def check_session(
    *,
    postgres_doc: Mapping[str, Any] | None,
    redis_doc: Mapping[str, Any] | None,
    redis_pointer: str | None,
    manifests: Sequence[Mapping[str, Any]],
    snapshot: Mapping[str, Any] | None,
    snapshot_sha256_recorded: str | None,
    snapshot_sha256_actual: str | None,
    legacy_status: str | None,
) -> list[Check]:
    checks = [Check("session_in_postgres", postgres_doc is not None)]
    if postgres_doc is None:
        checks.append(Check("legacy_row_present", legacy_status is not None, str(legacy_status)))
        return checks
    session_id = postgres_doc["session_id"]
    checks.append(
        Check(
            "session_in_redis",
            redis_doc is not None and redis_pointer == session_id,
            f"pointer={redis_pointer}",
        )
    )
    checks.append(
        Check(
            "redis_equals_postgres",
            redis_doc == postgres_doc,
            _first_difference(postgres_doc, redis_doc),
        )
    )
    steps = postgres_doc["steps"]
    numbers = [step["step_number"] for step in steps]
    checks.append(
        Check(
            "twenty_four_steps", numbers == list(range(1, STEPS_TOTAL + 1)), f"{len(steps)} steps"
        )
    )
    checks.extend(session_consistency(postgres_doc))
    completed = postgres_doc["status"] == "completed"
    checks.append(
        Check(
            "manifest_present_iff_completed",
            bool(manifests) == completed,
            f"status={postgres_doc['status']}, manifests={len(manifests)}",
        )
    )
    bad = [m["version"] for m in manifests if manifest_checksum(m["manifest"]) != m["checksum"]]
    checks.append(
        Check("manifest_checksum_recomputes", not bad, f"mismatched versions: {bad}" if bad else "")
    )
    checks.append(
        Check(
            "legacy_row_marked_migrated",
            legacy_status == LegacyStatus.MIGRATED,
            f"status={legacy_status}",
        )
    )
    checks.append(
        Check(
            "snapshot_present",
            snapshot is not None and snapshot_sha256_actual == snapshot_sha256_recorded,
            "" if snapshot is not None else "no snapshot",
        )
    )
    return checks


def session_consistency(doc: Mapping[str, Any]) -> list[Check]:
    """A session document's figures (percentage, steps completed, status, current step, the
    required flags) against its own steps.

    This derives the session-status rule a second time, on purpose: the planner decides it
    (``planner._shape``), and this is the independent check that a stored session obeys it,
    so it must not call the planner's code. Change the rule in both places;
    ``tests/core/test_planner_properties.py`` fails when they disagree.
    """
    steps = doc["steps"]
    required = {step.number for step in STEPS if step.required}
    done = [s for s in steps if s["status"] == "completed"]
    percentage = round(100 * len(done) / STEPS_TOTAL, 2)
    required_done = {s["step_number"] for s in done} >= required
    status = "completed" if required_done else ("in_progress" if done else "not_started")
    pending = [s["step_number"] for s in steps if s["status"] == "pending"]
    current = min(pending) if pending else None
    flags_ok = all(s["required"] == (s["step_number"] in required) for s in steps)
    return [
        Check(
            "percentage_consistent",
            doc["completion_percentage"] == percentage and doc["steps_completed"] == len(done),
            f"stored {doc['completion_percentage']} / {doc['steps_completed']}, "
            f"steps say {percentage} / {len(done)}",
        ),
        Check(
            "status_consistent",
            doc["status"] == status and doc["current_step"] == current and flags_ok,
            f"stored {doc['status']} at {doc['current_step']}, steps say {status} at {current}",
        ),
    ]


def _first_difference(expected: Mapping[str, Any], actual: Mapping[str, Any] | None) -> str:
    if actual is None:
        return "missing in Redis"
    for key in sorted(set(expected) | set(actual)):
        if expected.get(key) != actual.get(key):
            return f"{key}: postgres={expected.get(key)!r} redis={actual.get(key)!r}"[:300]
    return ""


def check_rolled_back(
    *,
    legacy_status: str | None,
    legacy_sha256_now: str | None,
    rollback: Mapping[str, Any],
    redis_pointer: str | None,
    redis_session_present: bool,
) -> list[Check]:
    """A user whose latest effect is a rollback: the legacy row is back as snapshotted, nothing
    of the session is left in PostgreSQL or Redis. ``rollback`` is the rolled_back outcome."""
    restored = rollback.get("restored_legacy_sha256")
    deleted = f"session {rollback.get('session_id')} deleted"
    return [
        *_legacy_row_alone(legacy_status, redis_pointer, session_detail=deleted),
        Check(
            "no_redis_session",
            not redis_session_present,
            f"onboarding:session:{rollback.get('session_id')} still in Redis"
            if redis_session_present
            else "",
        ),
        Check(
            "rollback_matched_snapshot",
            rollback.get("matches_snapshot") is True,
            ""
            if rollback.get("matches_snapshot")
            else "the restored row differed from the snapshot",
        ),
        Check(
            "legacy_row_unchanged_since_rollback",
            restored is not None and legacy_sha256_now == restored,
            "" if legacy_sha256_now == restored else "the legacy row changed after the rollback",
        ),
    ]


def check_never_migrated(*, legacy_status: str | None, redis_pointer: str | None) -> list[Check]:
    """A user never migrated (or only in dry runs): the legacy row alone, nothing new anywhere."""
    return _legacy_row_alone(legacy_status, redis_pointer, session_detail="")


def _legacy_row_alone(
    legacy_status: str | None, redis_pointer: str | None, *, session_detail: str
) -> list[Check]:
    """What holds for a user without a session: the legacy row is there and not marked
    migrated, and Redis points at no session (the caller found none in PostgreSQL)."""
    return [
        Check("legacy_row_present", legacy_status is not None, f"status={legacy_status}"),
        Check(
            "legacy_row_not_marked_migrated",
            legacy_status is not None and legacy_status != LegacyStatus.MIGRATED,
            f"status={legacy_status}",
        ),
        Check("no_session_in_postgres", True, session_detail),
        Check("no_redis_pointer", redis_pointer is None, f"pointer={redis_pointer}"),
    ]


# The columns the legacy system owns: a change to any of them after the snapshot is drift.
_LEGACY_CONTENT = ("workspace_id", "current_step", "completed_steps", "answers")


def check_legacy_unchanged(
    *, legacy: Mapping[str, Any] | None, snapshot: Mapping[str, Any] | None, migrated_at: Any
) -> Check:
    """Drift: the legacy system wrote to a migrated user after its snapshot was taken.

    The migration itself only sets ``status`` and ``updated_at`` (to the migration's time), so
    any other column that differs from the snapshot, or a later ``updated_at``, is the legacy
    system's write: the session no longer reflects the legacy row, and a rollback would undo
    that write.
    """
    name = "legacy_row_unchanged_since_migration"
    if legacy is None or snapshot is None:
        return Check(name, False, "no legacy row" if legacy is None else "no snapshot")
    changed = [c for c in _LEGACY_CONTENT if _jsonable(legacy.get(c)) != snapshot.get(c)]
    updated = legacy.get("updated_at")
    if updated is not None and migrated_at is not None and updated > migrated_at:
        changed.append(f"updated_at={updated.isoformat()} after the migration")
    return Check(name, not changed, f"changed: {', '.join(changed)}" if changed else "")


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
