"""The new onboarding session and its steps (contract §7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


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
