"""Pure checks of HTTP input: authorization (admin writes, reads of users' data) and request
bodies.

Kept apart from the views so that every 4xx answer is a unit test, not a server round trip.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, replace
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from schemas.events import describe
from schemas.identifiers import RUN_ID, RUN_ID_RULE, USER_ID, USER_ID_RULE
from streams.web.api import BulkBody, CancelBody, OptionsBody, PauseBody, ThrottleBody

MAX_BODY_BYTES = 1024 * 1024
MAX_USER_IDS = 10_000


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
    given = _bearer(header)
    if given is None:
        raise InputError(401, "missing bearer token")
    if not hmac.compare_digest(given, configured.encode()):
        raise InputError(401, "wrong bearer token")


def authorize_read(read_token: str | None, admin_token: str | None, header: str | None) -> None:
    """A read of users' data (ids, one user's state): the read token, or the admin token, since
    whoever may write may read.

    It mirrors the admin endpoints, secure by default: a service with neither token set hands
    out no user's data (403 naming the setting), as it publishes nothing; a missing token, or
    one that is neither, is 401. Configuring only the admin token is enough for the operator's
    own reads; the read token is for people who may look but not write (a dashboard viewer).
    """
    tokens = [token.encode() for token in (read_token, admin_token) if token]
    if not tokens:
        raise InputError(
            403,
            "users' data is not served: MIGRATOR_READ_TOKEN (or MIGRATOR_ADMIN_TOKEN) is not set",
        )
    given = _bearer(header)
    if given is None:
        raise InputError(
            401, "missing bearer token: users' data needs the read token or the admin token"
        )
    # Compared with each, always: the time taken does not tell which token came close.
    matches = [hmac.compare_digest(given, token) for token in tokens]
    if not any(matches):
        raise InputError(401, "wrong bearer token")


def may_read_user_ids(read_token: str | None, admin_token: str | None, header: str | None) -> bool:
    """Whether an answer that is open in aggregate (failures, revalidation, audit, stats) may
    include users' ids: only for a token ``authorize_read`` accepts.

    Without an ``Authorization`` header the answer is the aggregates (False). A header that is
    present but refused is an error (401/403), not quietly answered without the ids: a mistyped
    token is noticed, not mistaken for "no users to show".
    """
    if not (header or "").strip():
        return False
    authorize_read(read_token, admin_token, header)
    return True


def _bearer(header: str | None) -> bytes | None:
    """The token of an ``Authorization: Bearer …`` header, or None."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip().encode()


@dataclass(frozen=True)
class RequestOptions:
    dry_run: bool = False
    reason: str | None = None
    requested_by: str = "http-api"
    run_id: str | None = None


@dataclass(frozen=True)
class BulkRequest:
    user_ids: list[str] | None  # None means every legacy user not yet migrated
    options: RequestOptions
    include_rolled_back: bool = False  # with everyone: also users rolled back before
    percent: float | None = None  # with everyone and a run: only this cohort
    include_failed: bool = False  # with everyone: also users whose migration failed for good


def check_user_id(user_id: str) -> str:
    if not USER_ID.fullmatch(user_id):
        raise InputError(400, f"user_id must be {USER_ID_RULE}")
    return user_id


def parse_options(raw: bytes) -> RequestOptions:
    """The body of a single-user endpoint: optional ``dry_run``, ``reason``, ``requested_by``."""
    return _options(_model(OptionsBody, _load(raw)))


def parse_bulk(raw: bytes, *, allow_all: bool) -> BulkRequest:
    """``{"user_ids": [...]}`` or (for migrate) ``{"all": true}``, plus the options."""
    body = _load(raw)
    ids = body.get("user_ids")
    if isinstance(ids, list) and len(ids) > MAX_USER_IDS:
        raise InputError(413, f"at most {MAX_USER_IDS} user_ids per request")
    bulk = _model(BulkBody, body)
    options = replace(_options(bulk), run_id=bulk.run)
    if bulk.include_rolled_back and not bulk.all:
        raise InputError(400, "include_rolled_back goes with all")
    if bulk.include_failed and not bulk.all:
        raise InputError(400, "include_failed goes with all")
    if bulk.percent is not None and not (bulk.all and bulk.run):
        raise InputError(400, "percent goes with all and run (a staged rollout's cohort)")
    if bulk.all:
        if not allow_all:
            raise InputError(400, "all is only accepted by POST migrate")
        if bulk.user_ids is not None:
            raise InputError(400, "give either user_ids or all, not both")
        return BulkRequest(
            None, options, bulk.include_rolled_back, bulk.percent, bulk.include_failed
        )
    if bulk.user_ids is None:
        hint = ' (or {"all": true})' if allow_all else ""
        raise InputError(400, f"user_ids must be a non-empty list{hint}")
    return BulkRequest(list(dict.fromkeys(bulk.user_ids)), options)


def parse_pause(raw: bytes) -> PauseBody:
    """The body of ``POST control/pause|resume``: optional ``reason`` and ``by``."""
    return _model(PauseBody, _load(raw))


def parse_cancel(raw: bytes) -> CancelBody:
    """The body of ``POST runs/{run_id}/cancel``: optional ``reason`` and ``by``."""
    return _model(CancelBody, _load(raw))


def parse_throttle(raw: bytes) -> ThrottleBody:
    """The body of ``POST control/throttle``: ``{"rate": N}`` or ``{"rate": null}``."""
    body = _load(raw)
    if "rate" not in body:
        raise InputError(400, 'rate is required: {"rate": 200} or {"rate": null} to lift it')
    return _model(ThrottleBody, body)


def check_run_id(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id):
        raise InputError(400, f"run id must be {RUN_ID_RULE}")
    return run_id


Body = TypeVar("Body", bound=BaseModel)


def _model(model: type[Body], body: dict[str, object]) -> Body:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise InputError(400, describe(exc)) from None


def _options(body: OptionsBody) -> RequestOptions:
    return RequestOptions(dry_run=body.dry_run, reason=body.reason, requested_by=body.requested_by)


def _load(raw: bytes) -> dict[str, object]:
    if len(raw) > MAX_BODY_BYTES:
        raise InputError(413, f"body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(400, f"body is not JSON: {exc}") from None
    except RecursionError:
        raise InputError(400, "body is not JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise InputError(400, "body must be a JSON object")
    return body
