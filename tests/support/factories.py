"""Small builders shared by the unit tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from agents.core.retry import RetryPolicy
from schemas.legacy import LegacyRow

NOW = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)
UPDATED = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
SESSION = uuid.UUID("11111111-2222-3333-4444-555555555555")
REQUIRED_LEGACY = (
    "account",
    "profile",
    "workspace",
    "company",
    "industry",
    "goals",
    "audience",
    "brand",
    "review",
)


def row(**fields: Any) -> LegacyRow:
    values: dict[str, Any] = {
        "user_id": "user-1",
        "workspace_id": "ws-1",
        "status": "in_progress",
        "current_step": None,
        "completed_steps": [],
        "answers": {},
        "updated_at": UPDATED,
        **fields,
    }
    return LegacyRow(**values)


# Retries that do not wait: the failure policy's tests on the in-memory stores.
FAST_RETRY = RetryPolicy(max_retries=2, base_delay_s=0.001, max_delay_s=0.001)
