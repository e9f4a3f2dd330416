"""The legacy onboarding row (contract §5) and its snapshot, the basis of an exact rollback."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from schemas.canonical import sha256_hex


class LegacyStatus(StrEnum):
    """The values the legacy system writes to ``status`` (``LegacyRow.status`` stays a plain
    string, see there); compare with these, so "migrated" reads as the legacy row's."""

    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    MIGRATED = "migrated"


class LegacyRow(BaseModel):
    """One row of ``legacy_onboarding_status``, every column, exactly as stored.

    ``status`` stays a plain string so that a value the legacy system should never have written
    is reported as invalid data instead of failing to load. ``completed_steps`` keeps order and
    duplicates: the restored row must equal the original column for column.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str
    workspace_id: str | None
    status: str
    current_step: str | None
    completed_steps: list[str]
    answers: dict[str, Any]
    updated_at: datetime

    @field_validator("updated_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("updated_at must carry a time zone")
        return value.astimezone(UTC)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready copy of every column; ``updated_at`` in UTC with microseconds."""
        return {
            "user_id": self.user_id,
            "workspace_id": self.workspace_id,
            "status": self.status,
            "current_step": self.current_step,
            "completed_steps": list(self.completed_steps),
            "answers": self.answers,
            "updated_at": snapshot_time(self.updated_at),
        }

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any]) -> LegacyRow:
        return cls.model_validate(
            {**snapshot, "updated_at": datetime.fromisoformat(snapshot["updated_at"])}
        )

    def snapshot_sha256(self) -> str:
        """SHA-256 of the canonical JSON of the snapshot (``legacy_snapshot_sha256``)."""
        return sha256_hex(self.snapshot())


@dataclass(frozen=True, slots=True)
class UnreadableLegacyRow:
    """A legacy row whose columns' types allow what ``LegacyRow`` does not: ``answers`` JSON
    that is not an object (jsonb takes any JSON), a NULL among ``completed_steps`` (text[]
    takes them). That user's ``invalid_legacy_data``; before, the model's error failed the
    whole batch, which was redone in halves until the row was found and answered
    ``internal_error``."""

    user_id: str
    problem: str
    columns: dict[str, Any]  # every column, as PostgreSQL holds it

    @property
    def status(self) -> str:
        return str(self.columns["status"])

    def model_dump(self) -> dict[str, Any]:
        """The columns, as ``LegacyRow.model_dump`` gives a readable row's (``validate`` holds
        either against the snapshot taken at migration)."""
        return dict(self.columns)

    def snapshot_sha256(self) -> str:
        """Over the snapshot's form of these columns, as ``LegacyRow.snapshot_sha256``."""
        updated_at = self.columns["updated_at"].astimezone(UTC)
        return sha256_hex({**self.columns, "updated_at": snapshot_time(updated_at)})


def snapshot_time(updated_at: datetime) -> str:
    """``updated_at`` (in UTC) as a snapshot holds it, microseconds always written."""
    return updated_at.isoformat(timespec="microseconds")


def legacy_row_or_problem(columns: dict[str, Any]) -> LegacyRow | UnreadableLegacyRow:
    """``columns`` (every column of one row) as a ``LegacyRow``, or what stops it being one."""
    try:
        return LegacyRow(**columns)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        return UnreadableLegacyRow(str(columns.get("user_id")), problems, columns)
