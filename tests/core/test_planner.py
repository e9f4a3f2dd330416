"""Every migration rule of contract §6, one test each."""

from __future__ import annotations

import hashlib
import json
import math
import uuid

import pytest
from support.factories import NOW, REQUIRED_LEGACY, SESSION, UPDATED, row

from agents.core.catalog import LEGACY_STEPS, REQUIRED_COUNT, STEPS, STEPS_TOTAL
from agents.core.manifest import build_manifest, manifest_checksum, token_estimate
from agents.core.planner import PlanError, plan_migration, session_id_for
from schemas.events import ErrorCode


def plan(**fields: object):
    return plan_migration(row(**fields), session_id=SESSION, now=NOW)


def statuses(result) -> dict[str, str]:
    return {s.step_key: s.status.value for s in result.steps}


def test_catalog_matches_the_contract() -> None:
    assert STEPS_TOTAL == 24 and REQUIRED_COUNT == 12 and len(LEGACY_STEPS) == 12
    assert [s.number for s in STEPS] == list(range(1, 25))
    assert STEPS[0].key == "account_created" and STEPS[23].key == "finalize"
    assert not STEPS[16].required and STEPS[16].key == "competitors"


def test_steps_complete_from_their_legacy_step_and_duplicates_are_ignored() -> None:
    result = plan(completed_steps=["account", "profile", "account"])
    done = [s.step_number for s in result.steps if s.status.value == "completed"]
    assert done == [1, 2, 3, 4]
    assert result.steps_completed == 4
    assert result.completion_percentage == round(100 * 4 / 24, 2) == 16.67
    assert all(s.completed_at == UPDATED for s in result.steps if s.status.value == "completed")
    assert all(s.completed_at is None for s in result.steps if s.status.value != "completed")


def test_not_completed_steps_are_pending_and_current_step_is_the_lowest_pending() -> None:
    result = plan(completed_steps=["account", "workspace"])
    assert set(statuses(result).values()) == {"completed", "pending"}
    assert result.current_step == 3
    assert result.status == "in_progress"


def test_nothing_done_is_not_started_at_step_one() -> None:
    result = plan(status="not_started", completed_steps=[])
    assert result.status == "not_started" and result.current_step == 1
    assert result.completion_percentage == 0.0 and result.manifest is None


def test_completed_legacy_status_completes_required_and_skips_missing_optional() -> None:
    result = plan(status="completed", completed_steps=["account", "team"])
    by_key = statuses(result)
    assert all(by_key[s.key] == "completed" for s in STEPS if s.required)
    assert by_key["invite_team"] == by_key["roles_permissions"] == "completed"  # team was done
    assert by_key["competitors"] == by_key["connect_channels"] == "skipped"
    assert result.status == "completed" and result.current_step is None
    assert result.steps_completed == 14 and result.completion_percentage == 58.33


def test_all_legacy_steps_done_is_100_percent() -> None:
    result = plan(status="in_progress", completed_steps=sorted(LEGACY_STEPS))
    assert result.completion_percentage == 100.0 and result.status == "completed"


def test_all_required_done_without_legacy_completed_status_is_completed_with_pending_optional() -> (
    None
):
    result = plan(status="in_progress", completed_steps=list(REQUIRED_LEGACY))
    assert result.status == "completed"
    assert result.current_step == 17  # competitors: the lowest optional step still pending
    assert result.manifest is not None


@pytest.mark.parametrize(
    ("legacy_steps", "completed", "percentage"),
    [
        ([], 0, 0.0),
        (["account"], 2, 8.33),
        (["account", "profile"], 4, 16.67),
        (
            ["account", "profile", "workspace", "company", "industry", "goals", "audience"],
            14,
            58.33,
        ),
        (sorted(LEGACY_STEPS), 24, 100.0),
    ],
)
def test_completion_percentage_is_completed_of_24_steps_to_two_decimals(
    legacy_steps: list[str], completed: int, percentage: float
) -> None:
    result = plan(completed_steps=legacy_steps)
    assert (result.steps_completed, result.completion_percentage) == (completed, percentage)


def test_unknown_legacy_step_fails_and_names_it() -> None:
    with pytest.raises(PlanError) as caught:
        plan(completed_steps=["account", "wizard", "bogus"])
    assert caught.value.code is ErrorCode.UNKNOWN_LEGACY_STEP
    assert "bogus" in caught.value.message and "wizard" in caught.value.message


@pytest.mark.parametrize("status", ["migrated", "paused", ""])
def test_statuses_that_cannot_be_planned_are_invalid_data(status: str) -> None:
    with pytest.raises(PlanError) as caught:
        plan(status=status)
    assert caught.value.code is ErrorCode.INVALID_LEGACY_DATA


@pytest.mark.parametrize(
    "answers", [{"goals": "grow"}, {"company_name": 42}, {"segments": ["a", 1]}]
)
def test_wrong_answer_types_are_invalid_data(answers: dict[str, object]) -> None:
    with pytest.raises(PlanError) as caught:
        plan(answers=answers)
    assert caught.value.code is ErrorCode.INVALID_LEGACY_DATA


def test_manifest_only_for_completed_sessions_with_nulls_for_missing_answers() -> None:
    assert plan(status="in_progress", completed_steps=["account"]).manifest is None
    result = plan(status="completed", workspace_id=None, answers={})
    manifest = result.manifest
    assert manifest is not None
    assert manifest["workspace_id"] is None
    assert manifest["company"] == {
        "name": None,
        "size": None,
        "industry": None,
        "sub_industry": None,
    }
    assert manifest["goals"] == {"primary": None, "success_metrics": None}
    assert manifest["competitors"] is None and manifest["integrations"] is None


def test_manifest_carries_unicode_answers_and_its_checksum_recomputes() -> None:
    answers = {"company_name": "株式会社さくら", "brand_voice": "warm ☀️", "goals": ["grow", "é"]}
    result = plan(status="completed", answers=answers)
    manifest = result.manifest
    assert manifest is not None and manifest["company"]["name"] == "株式会社さくら"
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert result.manifest_checksum == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert result.manifest_checksum == manifest_checksum(manifest)
    assert result.token_estimate == math.ceil(len(canonical) / 4) == token_estimate(manifest)


def test_manifest_is_a_pure_function_of_the_legacy_row() -> None:
    legacy = row(status="completed", answers={"company_name": "Acme"})
    assert build_manifest(legacy) == build_manifest(legacy)
    other = plan_migration(legacy, session_id=session_id_for("x", SESSION, 0), now=UPDATED)
    assert (
        other.manifest_checksum
        == plan_migration(legacy, session_id=SESSION, now=NOW).manifest_checksum
    )


def test_snapshot_and_its_hash_are_in_the_plan() -> None:
    legacy = row(completed_steps=["account", "account"], answers={"goals": ["ü"]})
    result = plan_migration(legacy, session_id=SESSION, now=NOW)
    assert result.legacy_snapshot == legacy.snapshot()
    assert result.legacy_sha256 == legacy.snapshot_sha256()


def test_session_ids_are_derived_from_user_request_and_time_and_sort_by_time() -> None:
    at = 1_796_000_000_000
    assert session_id_for("u", SESSION, at) == session_id_for("u", SESSION, at)
    assert session_id_for("u", SESSION, at) != session_id_for("v", SESSION, at)
    assert session_id_for("u", SESSION, at) != session_id_for("u", uuid.uuid4(), at)
    later = [session_id_for(f"u{n}", uuid.uuid4(), at + n) for n in range(1, 200)]
    assert sorted(later) == later
    assert all(s.version == 7 and s.variant == uuid.RFC_4122 for s in later)
    assert later[0].int >> 80 == at + 1
