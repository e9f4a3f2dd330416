"""What a wave's decisions write (rows, ledger, audit) and what Redis must look like: pure."""

from __future__ import annotations

import json
import uuid

from support.factories import NOW, SESSION, row

from agents.core.decide import (
    AlreadyMigrated,
    Decision,
    Duplicate,
    Failed,
    Migrate,
    Rejected,
    Replayed,
    RollBack,
    Work,
)
from agents.core.effects import (
    MirrorPlan,
    answer,
    answer_rows,
    plan_effects,
    plan_mirror,
    processed_rows,
)
from agents.core.outcomes import build_outcome
from agents.core.planner import plan_migration
from agents.core.state import StoredSession
from schemas.events import ErrorCode, MigrationRequest, Outcome, parse_outcome_json

LEGACY = row(user_id="u1", completed_steps=["account", "profile"])
OTHER_SESSION = uuid.UUID("99999999-2222-3333-4444-555555555555")


def work(user: str = "u1", action: str = "migrate", *, dry_run: bool = False) -> Work:
    request = MigrationRequest(
        request_id=uuid.uuid4(), user_id=user, action=action, dry_run=dry_run
    )
    return Work(request, 3, 7, None, b"digest")


def stored(user: str = "u1", session_id: uuid.UUID = SESSION) -> StoredSession:
    return StoredSession(
        session_id=session_id,
        user_id=user,
        workspace_id="ws-1",
        status="in_progress",
        current_step=3,
        completion_percentage=8.33,
        steps_completed=2,
        legacy_snapshot=LEGACY.snapshot(),
        legacy_sha256=LEGACY.snapshot_sha256(),
        bcm_version=None,
        bcm_checksum=None,
        bcm_token_estimate=None,
    )


def migrate() -> Migrate:
    return Migrate(plan_migration(LEGACY, session_id=SESSION, now=NOW))


def test_a_migration_writes_its_session_steps_and_legacy_mark_and_mirrors_the_plan() -> None:
    decision = migrate()
    effects = plan_effects([work()], [decision], now=NOW)
    [session] = effects.sessions
    assert (session.session_id, session.user_id, session.created_at) == (SESSION, "u1", NOW)
    assert [s.session_id for s in effects.steps] == [SESSION]
    assert len(effects.steps[0].step_codes) == 24
    # A manifest when the legacy answers make one (none for this user, who answered nothing).
    assert len(effects.manifests) == (decision.plan.manifest is not None)
    assert effects.migrated_users == ["u1"]
    assert effects.rolled_back_ids == [] and effects.snapshots == [] and effects.restored == {}
    document = effects.mirror.documents["u1"]
    assert document is not None and document["session_id"] == str(SESSION)
    assert not effects.mirror.stale_sessions and not effects.mirror.to_repair


def test_a_dry_run_writes_nothing_but_a_dry_rollback_says_what_it_would_restore() -> None:
    dry = plan_effects([work(dry_run=True)], [migrate()], now=NOW)
    assert (dry.sessions, dry.migrated_users, dry.mirror) == ([], [], MirrorPlan())
    back = plan_effects([work(action="rollback", dry_run=True)], [RollBack(stored())], now=NOW)
    assert back.restored == {"u1": LEGACY} and back.snapshots == []
    assert back.mirror == MirrorPlan()


def test_a_rollback_deletes_the_session_restores_the_snapshot_and_clears_the_mirror() -> None:
    effects = plan_effects([work(action="rollback")], [RollBack(stored())], now=NOW)
    assert effects.rolled_back_ids == [SESSION] and effects.snapshots == [LEGACY.snapshot()]
    assert effects.mirror.documents == {"u1": None}
    assert effects.mirror.stale_sessions == {str(SESSION)}


def _published(kind: str, session_id: uuid.UUID) -> Outcome:
    """An outcome as the ledger keeps it (the bytes first published), read back."""
    fields = {"event_id": str(uuid.uuid4()), "request_id": str(uuid.uuid4()), "user_id": "u"}
    published = {
        **fields,
        "action": "rollback" if kind == "rolled_back" else "migrate",
        "outcome": kind,
        "session_id": str(session_id),
        "processed_at": NOW.isoformat(),
    }
    return parse_outcome_json(json.dumps(published).encode())


def test_the_mirror_plan_is_read_from_the_decisions_not_the_published_event() -> None:
    rolled_back = _published("rolled_back", SESSION)
    migrated = _published("migrated", OTHER_SESSION)
    plan = plan_mirror(
        [work("u1"), work("u2"), work("u3"), work("u4")],
        [
            Replayed(rolled_back),
            Duplicate(migrated),
            AlreadyMigrated(stored("u3")),
            Failed(ErrorCode.USER_NOT_FOUND, "no row"),
        ],
    )
    assert plan.stale_sessions == {str(SESSION)}
    assert plan.to_repair == {"u1", "u2", "u3"}
    assert plan.documents == {}


def test_a_later_wave_wins_and_a_planned_user_needs_no_repair() -> None:
    first = plan_mirror([work("u1")], [migrate()])
    later = plan_mirror(
        [work("u1", "rollback"), work("u2")], [RollBack(stored()), AlreadyMigrated(stored("u2"))]
    )
    merged = first.then(later)
    assert merged.documents == {"u1": None}
    assert merged.to_repair == {"u2"}
    again = first.then(plan_mirror([work("u1")], [AlreadyMigrated(stored())]))
    assert again.to_repair == frozenset() and again.documents == first.documents


def test_ledger_rows_record_effects_and_every_answer_is_audited_with_its_json() -> None:
    wave = [work("u1"), work("u2"), work("u3", dry_run=True)]
    decisions: list[Decision] = [migrate(), Failed(ErrorCode.USER_NOT_FOUND, "no row"), migrate()]
    answers = [
        answer(build_outcome(w, d, now=NOW, duration_ms=1.0))
        for w, d in zip(wave, decisions, strict=True)
    ]
    ledger, audit = answer_rows(wave, decisions, answers, now=NOW)
    assert [r.user_id for r in ledger] == ["u1"]  # not a failure, not a dry run
    assert ledger[0].outcome == answers[0].json and ledger[0].source_offset == 7
    assert [(a.user_id, a.outcome, a.error_code) for a in audit] == [
        ("u1", "migrated", None),
        ("u2", "failed", "user_not_found"),
        ("u3", "migrated", None),
    ]
    detail = json.loads(audit[1].detail)
    assert detail["decision"] == "Failed" and detail["source"] == {"partition": 3, "offset": 7}
    assert detail["outcome"] == json.loads(answers[1].json)


def test_an_answer_is_its_outcome_encoded_once() -> None:
    outcome = build_outcome(work(), migrate(), now=NOW, duration_ms=1.0)
    assert answer(outcome) == (outcome, outcome.model_dump_json().encode())


def test_processed_rows_keep_each_positions_answer_and_a_dead_letter_as_none() -> None:
    done = work()
    kept = answer(build_outcome(done, migrate(), now=NOW, duration_ms=1.0))
    unplaced = Work(done.request)  # outside Kafka: no position to remember
    rows = processed_rows(
        "app", [(done, kept), (unplaced, kept)], [Rejected(3, 8, b"bad")], now=NOW
    )
    assert [(r.source_offset, r.outcome) for r in rows] == [(7, kept.json), (8, None)]
    assert {r.app_id for r in rows} == {"app"} and rows[1].record_digest == b"bad"
