"""Invariants of the planner over generated legacy rows (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from support.factories import NOW, SESSION

from agents.core.catalog import LEGACY_STEPS, STEPS
from agents.core.manifest import manifest_checksum
from agents.core.planner import plan_migration
from schemas.legacy import LegacyRow

text = st.text(min_size=0, max_size=20)
rows = st.builds(
    LegacyRow,
    user_id=st.from_regex(r"[A-Za-z0-9._:@-]{1,20}", fullmatch=True),
    workspace_id=st.none() | text,
    status=st.sampled_from(["not_started", "in_progress", "completed"]),
    current_step=st.none() | st.sampled_from(sorted(LEGACY_STEPS)),
    completed_steps=st.lists(st.sampled_from(sorted(LEGACY_STEPS)), max_size=20),
    answers=st.fixed_dictionaries(
        {},
        optional={
            "company_name": text,
            "industry": text,
            "brand_voice": text,
            "goals": st.lists(text, max_size=3),
            "competitors": st.lists(text, max_size=3),
        },
    ),
    updated_at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)


@settings(max_examples=150, deadline=None)
@given(rows)
def test_plan_invariants(legacy: LegacyRow) -> None:
    result = plan_migration(legacy, session_id=SESSION, now=NOW)
    assert [s.step_number for s in result.steps] == list(range(1, 25))
    completed = [s for s in result.steps if s.status.value == "completed"]
    assert 0 <= result.completion_percentage <= 100
    assert result.steps_completed == len(completed)
    assert result.completion_percentage == round(100 * len(completed) / 24, 2)
    required_done = all(s.status.value == "completed" for s in result.steps if s.required)
    expected = "completed" if required_done else "in_progress" if completed else "not_started"
    assert result.status == expected
    pending = [s.step_number for s in result.steps if s.status.value == "pending"]
    assert result.current_step == (min(pending) if pending else None)
    assert (result.manifest is not None) == (result.status == "completed")
    if result.manifest is not None:
        assert result.manifest_checksum == manifest_checksum(result.manifest)
    assert [s.required for s in result.steps] == [s.required for s in STEPS]
    assert plan_migration(legacy, session_id=SESSION, now=NOW) == result


@settings(max_examples=100, deadline=None)
@given(rows)
def test_snapshot_round_trip_is_exact(legacy: LegacyRow) -> None:
    again = LegacyRow.from_snapshot(legacy.snapshot())
    assert again == legacy
    assert again.snapshot_sha256() == legacy.snapshot_sha256()
