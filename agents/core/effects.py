"""What a wave's decisions write: rows for PostgreSQL and the plan for the Redis mirror. Pure.

The batch transaction decides a wave (``decide``), asks ``plan_effects`` for the rows that change
sessions and legacy rows, writes them, builds the outcomes, encodes each once (``answer``), then
asks ``answer_rows`` for the ledger and audit rows that record them. The mirror plan is read from
the decisions alone (a replayed rollback says so in its stored outcome), never from the event
being published.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from pydantic_core import to_json

from agents.core.decide import (
    AlreadyMigrated,
    Decision,
    Duplicate,
    Migrate,
    Rejected,
    Replayed,
    RollBack,
    Work,
)
from agents.core.documents import document_from_plan
from agents.core.manifest import MANIFEST_VERSION
from agents.core.rows import AuditRow, LedgerRow, ManifestRow, ProcessedRow, SessionRow, StepsRow
from schemas.events import FOR_GOOD_CODES, Outcome
from schemas.legacy import LegacyRow
from schemas.rows import JsonText


class Answer(NamedTuple):
    """One request's outcome and its JSON, encoded once: the bytes every row stores and the
    record publishes."""

    outcome: Outcome
    json: JsonText


def answer(outcome: Outcome) -> Answer:
    return Answer(outcome, JsonText(to_json(outcome)))


@dataclass(frozen=True)
class MirrorPlan:
    """What Redis must look like for a batch's users once PostgreSQL has committed.

    ``documents``: the session document of a user (None: the user has no session any more);
    ``stale_sessions``: session documents to delete; ``to_repair``: users whose document is
    read back from PostgreSQL (a request answered before: its effect is already there).
    """

    documents: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    stale_sessions: frozenset[str] = frozenset()
    to_repair: frozenset[str] = frozenset()

    def then(self, later: MirrorPlan) -> MirrorPlan:
        """This plan followed by a later wave's: the later document of a user wins, and a user
        with a document already planned needs no repair."""
        return MirrorPlan(
            {**self.documents, **later.documents},
            self.stale_sessions | later.stale_sessions,
            self.to_repair | {user for user in later.to_repair if user not in self.documents},
        )


@dataclass(frozen=True)
class Effects:
    """A wave's writes, set-based: one statement (or COPY) per field."""

    sessions: list[SessionRow]
    steps: list[StepsRow]
    manifests: list[ManifestRow]
    migrated_users: list[str]  # legacy rows marked migrated
    rolled_back_ids: list[UUID]  # sessions deleted
    snapshots: list[dict[str, Any]]  # legacy rows written back
    restored: dict[str, LegacyRow]  # a dry-run rollback's legacy row, as it would be restored
    mirror: MirrorPlan


def plan_effects(wave: Sequence[Work], decisions: Sequence[Decision], *, now: datetime) -> Effects:
    sessions: list[SessionRow] = []
    steps: list[StepsRow] = []
    manifests: list[ManifestRow] = []
    migrated_users: list[str] = []
    rolled_back: list[UUID] = []
    snapshots: list[dict[str, Any]] = []
    restored: dict[str, LegacyRow] = {}
    for work, decision in zip(wave, decisions, strict=True):
        if isinstance(decision, Migrate) and not work.request.dry_run:
            plan = decision.plan
            migrated_users.append(plan.user_id)
            sessions.append(
                SessionRow(
                    session_id=plan.session_id,
                    user_id=plan.user_id,
                    workspace_id=plan.workspace_id,
                    status=plan.status,
                    current_step=plan.current_step,
                    completion_percentage=plan.completion_percentage,
                    steps_completed=plan.steps_completed,
                    legacy_snapshot=plan.legacy_snapshot_json,
                    legacy_sha256=plan.legacy_sha256,
                    request_id=work.request.request_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            steps.append(StepsRow(plan.session_id, plan.step_codes, plan.completed_at))
            if plan.manifest is not None:
                assert plan.manifest_checksum is not None and plan.token_estimate is not None
                assert plan.manifest_json is not None
                manifests.append(
                    ManifestRow(
                        session_id=plan.session_id,
                        user_id=plan.user_id,
                        version=MANIFEST_VERSION,
                        manifest=plan.manifest_json,
                        checksum=plan.manifest_checksum,
                        token_estimate=plan.token_estimate,
                        created_at=now,
                    )
                )
        elif isinstance(decision, RollBack):
            if work.request.dry_run:
                snapshot = decision.session.legacy_snapshot
                restored[work.request.user_id] = LegacyRow.from_snapshot(snapshot)
            else:
                rolled_back.append(decision.session.session_id)
                snapshots.append(decision.session.legacy_snapshot)
    return Effects(
        sessions,
        steps,
        manifests,
        migrated_users,
        rolled_back,
        snapshots,
        restored,
        plan_mirror(wave, decisions),
    )


def plan_mirror(wave: Sequence[Work], decisions: Sequence[Decision]) -> MirrorPlan:
    """The Redis plan of one wave (each user at most once in it)."""
    documents: dict[str, dict[str, Any] | None] = {}
    stale: set[str] = set()
    to_repair: set[str] = set()
    for work, decision in zip(wave, decisions, strict=True):
        if work.request.dry_run:
            continue
        user = work.request.user_id
        if isinstance(decision, Migrate):
            documents[user] = document_from_plan(decision.plan)
        elif isinstance(decision, RollBack):
            stale.add(str(decision.session.session_id))
            documents[user] = None
        elif isinstance(decision, AlreadyMigrated | Replayed | Duplicate):
            if isinstance(decision, Replayed | Duplicate):
                # The request took effect before: a rollback then deleted this session.
                stored = decision.outcome
                if stored.outcome == "rolled_back" and stored.session_id is not None:
                    stale.add(str(stored.session_id))
            if user not in documents:
                to_repair.add(user)
    return MirrorPlan(documents, frozenset(stale), frozenset(to_repair))


def answer_rows(
    wave: Sequence[Work],
    decisions: Sequence[Decision],
    answers: Sequence[Answer],
    *,
    now: datetime,
) -> tuple[list[LedgerRow], list[AuditRow]]:
    """The ledger rows (requests that took effect, or found it in place) and one audit row per
    answer, with the decision that made it."""
    ledger: list[LedgerRow] = []
    audit: list[AuditRow] = []
    for work, decision, (outcome, json) in zip(wave, decisions, answers, strict=True):
        if not work.request.dry_run and isinstance(decision, Migrate | AlreadyMigrated | RollBack):
            ledger.append(
                LedgerRow(
                    request_id=work.request.request_id,
                    user_id=work.request.user_id,
                    action=work.request.action,
                    outcome=json,
                    source_partition=work.partition,
                    source_offset=work.offset,
                    processed_at=now,
                )
            )
        audit.append(audit_row(work, type(decision).__name__, outcome, json, now))
    return ledger, audit


def fails_for_good(work: Work, outcome: Outcome) -> bool:
    """A migrate (not a dry run) that failed for a reason only fixing the user's data cures:
    the failures ``progress`` counts as done and the failure budget judges only once."""
    return (
        outcome.error is not None
        and outcome.error.code.value in FOR_GOOD_CODES
        and work.request.action == "migrate"
        and not work.request.dry_run
    )


def audit_row(
    work: Work, decision: str, outcome: Outcome, document: JsonText, now: datetime
) -> AuditRow:
    # {"decision": …, "source": {"partition": …, "offset": …}, "outcome": <the outcome>}
    head = to_json(
        {"decision": decision, "source": {"partition": work.partition, "offset": work.offset}}
    )
    detail = JsonText(head[:-1] + b',"outcome":' + document + b"}")
    return AuditRow(
        request_id=work.request.request_id,
        user_id=work.request.user_id,
        action=work.request.action,
        outcome=outcome.outcome,
        error_code=outcome.error.code.value if outcome.error else None,
        detail=detail,
        created_at=now,
        run_id=work.request.run_id,
    )


def processed_rows(
    app_id: str,
    answered: Sequence[tuple[Work, Answer]],
    rejected: Sequence[Rejected],
    *,
    now: datetime,
) -> list[ProcessedRow]:
    """The answer given to each record position (None for a record dead-lettered)."""
    rows = [
        ProcessedRow(
            app_id=app_id,
            source_partition=work.partition,
            source_offset=work.offset,
            record_digest=work.digest,
            outcome=json,
            processed_at=now,
        )
        for work, (_, json) in answered
        if work.partition is not None and work.offset is not None
    ]
    rows += [ProcessedRow(app_id, r.partition, r.offset, r.digest, None, now) for r in rejected]
    return rows
