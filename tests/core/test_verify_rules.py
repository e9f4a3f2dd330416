"""verify's pure rules: the planned session from step masks equals the planner's, the SQL masks
agree with the catalog, findings are named and kinded, and the repair plan never rebuilds a
user with drift or a snapshot it cannot trust."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from support.factories import SESSION

from agents.core.catalog import LEGACY_STEPS, STEPS
from agents.core.planner import plan_migration
from agents.core.verify_rules import (
    ALL_STEPS,
    REQUIRED_MASK,
    Finding,
    by_kind,
    by_user,
    planned_masks,
    planned_session,
    session_findings,
    sessionless_findings,
)
from agents.jobs.verify_repair import plan_repair
from schemas.legacy import LegacyRow
from schemas.session import StepStatus

DDL = Path(__file__).parents[2] / "sql" / "ddl" / "014_verify.sql"


def _mask(row: LegacyRow) -> int:
    done = set(row.completed_steps)
    mask = 0
    for step in STEPS:
        if step.legacy_step in done:
            mask |= 1 << (step.number - 1)
    return mask | (REQUIRED_MASK if row.status == "completed" else 0)


rows = st.builds(
    LegacyRow,
    user_id=st.just("user-1"),
    workspace_id=st.none() | st.just("ws-1"),
    status=st.sampled_from(["not_started", "in_progress", "completed"]),
    current_step=st.none(),
    completed_steps=st.lists(st.sampled_from(sorted(LEGACY_STEPS)), max_size=14),
    answers=st.just({}),
    updated_at=st.just(datetime(2026, 3, 4, tzinfo=UTC)),
)


@settings(max_examples=300, deadline=None)
@given(rows)
def test_the_planned_session_from_masks_is_the_planners(row: LegacyRow) -> None:
    plan = plan_migration(row, session_id=SESSION, now=datetime(2026, 11, 1, tzinfo=UTC))
    completed, skipped = planned_masks(_mask(row), row.status == "completed")
    planned = planned_session(completed, skipped)
    assert planned.statuses == plan.step_statuses
    assert planned.status == plan.status
    assert planned.current_step == plan.current_step
    assert planned.steps_completed == plan.steps_completed
    assert planned.completion_percentage == plan.completion_percentage


def test_the_sql_masks_are_the_catalogs() -> None:
    """DDL 014 spells contract §5's table out as masks; it must say what catalog.py says."""
    text = DDL.read_text()
    found = dict(re.findall(r"\? '(\w+)' THEN (\d+)", text))
    expected: dict[str, int] = {}
    for step in STEPS:
        expected[step.legacy_step] = expected.get(step.legacy_step, 0) | 1 << (step.number - 1)
    assert {name: int(mask) for name, mask in found.items()} == expected
    assert f"THEN {REQUIRED_MASK} ELSE 0 END)" in text


def chunk_row(**changes: Any) -> dict[str, Any]:
    """A verify_chunk row of a completed user whose session is exactly as planned."""
    completed, skipped = planned_masks(REQUIRED_MASK, True)
    planned = planned_session(completed, skipped)
    row: dict[str, Any] = {
        "user_id": "user-1",
        "legacy_status": "migrated",
        "session_id": SESSION,
        "status": planned.status,
        "current_step": planned.current_step,
        "completion_percentage": planned.completion_percentage,
        "steps_completed": planned.steps_completed,
        "identity_ok": True,
        "snapshot_ok": True,
        "legacy_unchanged": True,
        "planned_completed": REQUIRED_MASK,
        "planned_skips": True,
        "step_rows": 24,
        "present": ALL_STEPS,
        "completed": completed,
        "skipped": skipped,
        "step_rows_ok": True,
        "manifests": 1,
        "manifest_ok": True,
        "checksum_ok": True,
    }
    return {**row, **changes}


def checks(found: list[Finding]) -> dict[str, str]:
    return {f.check: f.kind for f in found}


def test_a_session_as_planned_has_no_finding() -> None:
    assert session_findings(chunk_row()) == []


def test_each_difference_is_named_with_who_may_repair_it() -> None:
    assert checks(session_findings(chunk_row(step_rows=23, present=ALL_STEPS - 1))) == {
        "steps": "postgres"
    }
    assert checks(session_findings(chunk_row(completed=REQUIRED_MASK - 1))) == {"steps": "postgres"}
    assert checks(session_findings(chunk_row(status="in_progress"))) == {"session": "postgres"}
    assert checks(session_findings(chunk_row(completion_percentage=49.0))) == {
        "session": "postgres"
    }
    assert checks(session_findings(chunk_row(manifests=0))) == {"manifest": "postgres"}
    assert checks(session_findings(chunk_row(checksum_ok=False))) == {
        "manifest_checksum": "postgres"
    }
    assert checks(session_findings(chunk_row(legacy_unchanged=False))) == {
        "legacy_row_unchanged_since_migration": "drift"
    }
    assert checks(session_findings(chunk_row(snapshot_ok=False))) == {
        "snapshot_hash": "unrepairable"
    }
    assert checks(session_findings(chunk_row(legacy_status="in_progress"))) == {
        "legacy_row_marked_migrated": "drift"
    }


def test_an_in_progress_user_has_no_manifest_and_pending_steps() -> None:
    completed, skipped = planned_masks(3, False)
    planned = planned_session(completed, skipped)
    assert (planned.status, planned.current_step, planned.steps_completed) == ("in_progress", 3, 2)
    assert skipped == 0
    assert planned.statuses.count(StepStatus.PENDING) == 22
    row = chunk_row(
        planned_completed=3,
        planned_skips=False,
        completed=completed,
        skipped=0,
        status="in_progress",
        current_step=3,
        steps_completed=2,
        completion_percentage=planned.completion_percentage,
    )
    assert checks(session_findings(row)) == {"manifest": "postgres"}
    assert session_findings({**row, "manifests": 0}) == []


def sessionless(**changes: Any) -> dict[str, Any]:
    return {
        "user_id": "user-2",
        "legacy_status": "in_progress",
        "latest_effect": "rolled_back",
        "restored_ok": True,
        "old_session_id": str(SESSION),
        **changes,
    }


def test_users_without_a_session() -> None:
    assert sessionless_findings(sessionless(), pointer=None, old_session_in_redis=False) == []
    assert checks(
        sessionless_findings(sessionless(restored_ok=False), pointer="x", old_session_in_redis=True)
    ) == {
        "legacy_row_as_restored": "drift",
        "no_redis_pointer": "redis",
        "no_redis_session": "redis",
    }
    assert checks(
        sessionless_findings(
            sessionless(latest_effect="migrated", legacy_status="migrated"),
            pointer=None,
            old_session_in_redis=False,
        )
    ) == {"session_in_postgres": "unrepairable"}
    assert checks(
        sessionless_findings(
            sessionless(latest_effect=None, legacy_status="migrated"),
            pointer=None,
            old_session_in_redis=False,
        )
    ) == {"legacy_row_not_marked_migrated": "drift"}


def test_the_repair_plan_rebuilds_only_what_the_snapshot_can_be_trusted_for() -> None:
    found = [
        Finding("a", "steps", "postgres"),
        Finding("a", "redis_equals_postgres", "redis"),
        Finding("b", "redis_pointer", "redis"),
        Finding("c", "steps", "postgres"),
        Finding("c", "legacy_row_unchanged_since_migration", "drift"),
        Finding("d", "snapshot_hash", "unrepairable"),
        Finding("d", "redis_session", "redis"),
    ]
    plan = plan_repair(found)
    assert plan.rebuild == ["a"]  # its mirror is rewritten by the rebuild
    assert plan.rewrite == ["b", "d"]  # PostgreSQL is the truth for the mirror either way
    assert plan.drift == ["c"]
    assert plan.unrepairable == ["d"]
    assert by_kind(found) == {"postgres": 2, "redis": 3, "drift": 1, "unrepairable": 1}
    assert [entry["user_id"] for entry in by_user(found)] == ["a", "b", "c", "d"]
