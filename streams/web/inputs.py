"""Pure checks of HTTP input for the admin endpoints: authorization and request bodies.

Kept apart from the views so that every 4xx answer is a unit test, not a server round trip.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass

MAX_BODY_BYTES = 1024 * 1024
MAX_USER_IDS = 10_000
USER_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


class InputError(ValueError):
    """Invalid HTTP input; ``status`` is the 4xx to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def authorize(configured: str | None, header: str | None) -> None:
    """403 when the service has no token, 401 when the caller's is missing or wrong."""
    if not configured:
        raise InputError(403, "admin endpoints are disabled: MIGRATOR_ADMIN_TOKEN is not set")
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise InputError(401, "missing bearer token")
    if not hmac.compare_digest(token.strip().encode(), configured.encode()):
        raise InputError(401, "wrong bearer token")


@dataclass(frozen=True)
class RequestOptions:
    dry_run: bool = False
    reason: str | None = None
    requested_by: str = "http-api"


@dataclass(frozen=True)
class BulkRequest:
    user_ids: list[str] | None  # None means every legacy user not yet migrated
    options: RequestOptions
    include_rolled_back: bool = False  # with everyone: also users rolled back before


def check_user_id(user_id: str) -> str:
    if not USER_ID.fullmatch(user_id):
        raise InputError(400, "user_id must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ -")
    return user_id


def parse_options(raw: bytes) -> RequestOptions:
    """The body of a single-user endpoint: optional ``dry_run``, ``reason``, ``requested_by``."""
    return _options(_load(raw), allowed=frozenset())


def parse_bulk(raw: bytes, *, allow_all: bool) -> BulkRequest:
    """``{"user_ids": [...]}`` or (for migrate) ``{"all": true}``, plus the options."""
    body = _load(raw)
    options = _options(body, allowed=frozenset({"user_ids", "all", "include_rolled_back"}))
    everyone = body.get("all", False)
    if everyone is not False and everyone is not True:
        raise InputError(400, "all must be true or false")
    include_rolled_back = body.get("include_rolled_back", False)
    if not isinstance(include_rolled_back, bool):
        raise InputError(400, "include_rolled_back must be true or false")
    if include_rolled_back and not everyone:
        raise InputError(400, "include_rolled_back goes with all")
    if everyone:
        if not allow_all:
            raise InputError(400, "all is only accepted by POST migrate")
        if "user_ids" in body:
            raise InputError(400, "give either user_ids or all, not both")
        return BulkRequest(None, options, include_rolled_back)
    user_ids = body.get("user_ids")
    if not isinstance(user_ids, list) or not user_ids:
        hint = ' (or {"all": true})' if allow_all else ""
        raise InputError(400, f"user_ids must be a non-empty list{hint}")
    if len(user_ids) > MAX_USER_IDS:
        raise InputError(413, f"at most {MAX_USER_IDS} user_ids per request")
    for user_id in user_ids:
        if not isinstance(user_id, str):
            raise InputError(400, "user_ids must be strings")
        check_user_id(user_id)
    return BulkRequest(list(dict.fromkeys(user_ids)), options)


def _load(raw: bytes) -> dict[str, object]:
    if len(raw) > MAX_BODY_BYTES:
        raise InputError(413, f"body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(400, f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InputError(400, "body must be a JSON object")
    return body


def _options(body: dict[str, object], *, allowed: frozenset[str]) -> RequestOptions:
    unknown = set(body) - allowed - {"dry_run", "reason", "requested_by"}
    if unknown:
        raise InputError(400, f"unknown fields: {', '.join(sorted(unknown))}")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InputError(400, "dry_run must be true or false")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 512):
        raise InputError(400, "reason must be a string of at most 512 characters")
    requested_by = body.get("requested_by", "http-api")
    if not isinstance(requested_by, str) or not 1 <= len(requested_by) <= 128:
        raise InputError(400, "requested_by must be a string of 1 to 128 characters")
    return RequestOptions(dry_run=dry_run, reason=reason, requested_by=requested_by)
