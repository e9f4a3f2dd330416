"""The new onboarding session and its steps (contract §7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class StepStatus(StrEnum):
    COMPLETED = "completed"
    SKIPPED = "skipped"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class SessionStep:
    """One of a session's 24 steps.

    The readable form of a planned session's steps (``MigrationPlan.steps``), for tests and
    readers. The hot path never builds them: a plan carries one status per step
    (``step_statuses``), PostgreSQL expands the step rows from one letter per step
    (``sql/queries/insert_steps.sql``) and the Redis document is built from the statuses
    (``agents/core/documents.py``).
    """

    step_number: int
    step_key: str
    status: StepStatus
    required: bool
    completed_at: datetime | None = None
