"""Invariants of the planner over generated legacy rows (hypothesis)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import to_json
from support.factories import NOW, SESSION

from agents.core.catalog import LEGACY_STEPS, STEPS
from agents.core.checks import session_consistency
from agents.core.documents import document_from_plan
from agents.core.manifest import manifest_checksum
from agents.core.planner import plan_migration
from agents.stores.redis_mirror import encode_document
from schemas.canonical import canonical_json, sha256_hex
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
    """What the status rule does not cover (``test_every_planned_session_passes_validate…``
    does): 24 steps in order with the catalog's flags, a manifest exactly for a completed
    session whose checksum recomputes, and the same plan for the same row."""
    result = plan_migration(legacy, session_id=SESSION, now=NOW)
    assert [s.step_number for s in result.steps] == list(range(1, 25))
    assert 0 <= result.completion_percentage <= 100
    assert (result.manifest is not None) == (result.status == "completed")
    if result.manifest is not None:
        assert result.manifest_checksum == manifest_checksum(result.manifest)
        # What PostgreSQL is handed is the text the checksum was computed over.
        assert result.manifest_json == canonical_json(result.manifest)
    else:
        assert result.manifest_json is None
    assert result.legacy_snapshot_json == canonical_json(result.legacy_snapshot)
    assert result.legacy_sha256 == sha256_hex(result.legacy_snapshot)
    assert json.loads(result.legacy_snapshot_json) == result.legacy_snapshot
    assert [s.required for s in result.steps] == [s.required for s in STEPS]
    assert plan_migration(legacy, session_id=SESSION, now=NOW) == result


@settings(max_examples=150, deadline=None)
@given(rows)
def test_every_planned_session_passes_validates_consistency_checks(legacy: LegacyRow) -> None:
    """The planner decides status, current step and percentage (``planner._shape``);
    ``migrator validate`` re-derives them independently (``checks.session_consistency``). Every
    session the planner makes, as it is stored, must pass that check: change the rule in one
    place only and this fails."""
    document = document_from_plan(plan_migration(legacy, session_id=SESSION, now=NOW))
    failed = [check for check in session_consistency(document) if not check.ok]
    assert not failed, failed


@settings(max_examples=100, deadline=None)
@given(rows)
def test_snapshot_round_trip_is_exact(legacy: LegacyRow) -> None:
    again = LegacyRow.from_snapshot(legacy.snapshot())
    assert again == legacy
    assert again.snapshot_sha256() == legacy.snapshot_sha256()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_json_is_the_contracts_encoding(value: object) -> None:
    """Contract §6 defines canonical JSON as this ``json.dumps`` call; the encoder made once
    must give the same bytes for any JSON value (unicode, nesting, floats, big integers)."""
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(value) == expected.encode("utf-8")


@settings(max_examples=150, deadline=None)
@given(rows)
def test_a_planned_document_is_mirrored_as_its_plain_encoding(legacy: LegacyRow) -> None:
    """The mirror writes a fresh session's head and its steps' cached JSON: the same bytes as
    the whole document encoded."""
    document = document_from_plan(plan_migration(legacy, session_id=SESSION, now=NOW))
    plain = dict(document)
    assert document == plain
    assert encode_document(document) == to_json(plain)
