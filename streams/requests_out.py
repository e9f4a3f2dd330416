"""Requests this service publishes itself (HTTP API, enqueue, replay): built and encoded one way."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime

from schemas.events import SCHEMA_VERSION, MigrationRequest


def new_request(
    user_id: str,
    *,
    action: str = "migrate",
    dry_run: bool = False,
    requested_by: str,
    reason: str | None = None,
    now: datetime,
    request_id: uuid.UUID | None = None,
    run_id: str | None = None,
) -> MigrationRequest:
    return MigrationRequest.model_validate(
        {
            "schema_version": SCHEMA_VERSION,
            "request_id": str(request_id or uuid.uuid4()),
            "user_id": user_id,
            "action": action,
            "dry_run": dry_run,
            "requested_by": requested_by,
            "requested_at": now.isoformat(),
            "attempt": 1,
            "reason": reason,
            "run_id": run_id,
        }
    )


def new_requests(
    user_ids: Iterable[str],
    *,
    action: str,
    dry_run: bool,
    requested_by: str,
    reason: str | None,
    now: datetime,
    request_id: Callable[[str], uuid.UUID] | None = None,
    run_id: str | None = None,
) -> list[MigrationRequest]:
    """One request per user, all alike but for the user (and ``request_id(user)`` if given)."""
    return [
        new_request(
            user_id,
            action=action,
            dry_run=dry_run,
            requested_by=requested_by,
            reason=reason,
            now=now,
            request_id=request_id(user_id) if request_id is not None else None,
            run_id=run_id,
        )
        for user_id in user_ids
    ]


def encode(request: MigrationRequest) -> tuple[bytes, bytes]:
    """Record key (the user id, as the contract requires) and JSON value."""
    return request.user_id.encode("utf-8"), request.model_dump_json(exclude_none=True).encode()
