"""The legacy onboarding row (contract §5) and its snapshot, the basis of an exact rollback."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

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
            "updated_at": self.updated_at.isoformat(timespec="microseconds"),
        }

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any]) -> LegacyRow:
        return cls.model_validate(
            {**snapshot, "updated_at": datetime.fromisoformat(snapshot["updated_at"])}
        )

    def snapshot_sha256(self) -> str:
        """SHA-256 of the canonical JSON of the snapshot (``legacy_snapshot_sha256``)."""
        return sha256_hex(self.snapshot())
