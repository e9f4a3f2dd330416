"""The new onboarding session and its steps (contract §7)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class StepStatus(StrEnum):
    COMPLETED = "completed"
    SKIPPED = "skipped"
    PENDING = "pending"


class SessionStatus(StrEnum):
    COMPLETED = "completed"
    IN_PROGRESS = "in_progress"
    NOT_STARTED = "not_started"


class SessionStep(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    step_number: int = Field(ge=1, le=24)
    step_key: str
    status: StepStatus
    required: bool
    completed_at: datetime | None = None
