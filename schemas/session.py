"""The new onboarding session and its steps (contract §7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class StepStatus(StrEnum):
    COMPLETED = "completed"
    SKIPPED = "skipped"
    PENDING = "pending"


class SessionStatus(StrEnum):
    COMPLETED = "completed"
    IN_PROGRESS = "in_progress"
    NOT_STARTED = "not_started"


@dataclass(frozen=True, slots=True)
class SessionStep:
    """One of a session's 24 steps.

    A plain dataclass, not a pydantic model: the planner builds 24 per user from the trusted
    step catalog on the hot path, where validating each one would cost more than the migration.
    """

    step_number: int
    step_key: str
    status: StepStatus
    required: bool
    completed_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "step_number": self.step_number,
            "step_key": self.step_key,
            "status": self.status.value,
            "required": self.required,
            "completed_at": self.completed_at,
        }
