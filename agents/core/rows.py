"""The rows a batch writes, one ``NamedTuple`` per table: the field names are the columns.

``agents.core.effects`` builds them with keyword arguments and the store copies them as they are
(``COPY … (columns)`` takes ``_fields``), so a new column is one edit here that mypy carries to
every place that builds the row. Plain data: no I/O, nothing imported from a client library.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from schemas.rows import JsonText


class SessionRow(NamedTuple):
    """``onboarding_sessions``."""

    session_id: UUID
    user_id: str
    workspace_id: str | None
    status: str
    current_step: int | None
    completion_percentage: float
    steps_completed: int
    legacy_snapshot: dict[str, Any] | JsonText
    legacy_sha256: str
    request_id: UUID
    created_at: datetime
    updated_at: datetime


class StepsRow(NamedTuple):
    """One session's ``onboarding_steps``, expanded by PostgreSQL from the step catalog: one
    status code per catalog step (``planner.STEP_CODES``) and when the completed ones were."""

    session_id: UUID
    step_codes: str
    completed_at: datetime


class ManifestRow(NamedTuple):
    """``business_context_manifests``."""

    session_id: UUID
    user_id: str
    version: int
    manifest: dict[str, Any] | JsonText
    checksum: str
    token_estimate: int
    created_at: datetime


class LedgerRow(NamedTuple):
    """``migration_requests``: a request that took effect (or found it in place)."""

    request_id: UUID
    user_id: str
    action: str
    outcome: JsonText
    source_partition: int | None
    source_offset: int | None
    processed_at: datetime


class AuditRow(NamedTuple):
    """``onboarding_migration_log``: every answer, with the decision that made it."""

    request_id: UUID
    user_id: str
    action: str
    outcome: str
    error_code: str | None
    detail: JsonText
    created_at: datetime
    run_id: str | None


class ProcessedRow(NamedTuple):
    """``processed_records``: the answer given to one record position of one app id (None for a
    record sent to the dead-letter topic)."""

    app_id: str
    source_partition: int
    source_offset: int
    record_digest: bytes
    outcome: bytes | None  # the outcome as published, byte for byte
    processed_at: datetime
