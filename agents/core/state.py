"""What a batch loads for a user before deciding: plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from schemas.events import SessionStatusName


@dataclass(frozen=True)
class StoredSession:
    """A session as a batch needs to see it: enough to report and to roll back."""

    session_id: UUID
    user_id: str
    workspace_id: str | None
    status: SessionStatusName
    current_step: int | None
    completion_percentage: float
    steps_completed: int
    legacy_snapshot: dict[str, Any]
    legacy_sha256: str
    bcm_version: int | None
    bcm_checksum: str | None
    bcm_token_estimate: int | None


@dataclass(frozen=True)
class LedgerEntry:
    request_id: UUID
    user_id: str
    action: str
    outcome: bytes  # the outcome the request was first answered with, as published
    source_partition: int | None
    source_offset: int | None
