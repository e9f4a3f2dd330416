"""Event models of the public contract (§2–§4) and the edge decoder for request records.

``decode_request`` is the only way a consumed record becomes a ``MigrationRequest``: it checks
size, encoding, JSON, action, schema version, fields and key in that order and answers either a
request or a ``Rejection`` naming the dead-letter reason with a message a person can act on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
)

from schemas.identifiers import RUN_ID_PATTERN, USER_ID_PATTERN, USER_ID_RULE

SCHEMA_VERSION = 1
MAX_RECORD_BYTES = 1024 * 1024

Action = Literal["migrate", "rollback"]
OutcomeKind = Literal["migrated", "failed", "rolled_back"]
SessionStatusName = Literal["completed", "in_progress", "not_started"]


class ErrorCode(StrEnum):
    USER_NOT_FOUND = "user_not_found"
    UNKNOWN_LEGACY_STEP = "unknown_legacy_step"
    INVALID_LEGACY_DATA = "invalid_legacy_data"
    NOT_MIGRATED = "not_migrated"
    REQUEST_ID_CONFLICT = "request_id_conflict"
    DATABASE_UNAVAILABLE = "database_unavailable"
    CACHE_UNAVAILABLE = "cache_unavailable"
    INTERNAL_ERROR = "internal_error"
    # An operator cancelled the request's run before it was answered (`migrator runs cancel`):
    # nothing was decided or written but the answer, so a replay may still carry it out.
    CANCELLED = "cancelled"


_RETRYABLE = frozenset(
    {ErrorCode.DATABASE_UNAVAILABLE, ErrorCode.CACHE_UNAVAILABLE, ErrorCode.CANCELLED}
)


def is_retryable(code: ErrorCode) -> bool:
    """Retryable failures may succeed unchanged later; the others need the data fixed first."""
    return code in _RETRYABLE


# The codes a retry does not cure (only fixing the user's data does): a user who failed with one
# and is not migrated is "failed for good" (progress counts them done, "everyone" holds them out).
FOR_GOOD_CODES = tuple(code.value for code in ErrorCode if not is_retryable(code))


class DeadLetterReason(StrEnum):
    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    UNKNOWN_ACTION = "unknown_action"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    INVALID_REQUEST = "invalid_request"
    KEY_MISMATCH = "key_mismatch"


class MigrationRequest(BaseModel):
    """A request record's value. Unknown fields are ignored: producers may add fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = 1
    request_id: UUID
    user_id: str = Field(pattern=USER_ID_PATTERN, min_length=1, max_length=128)
    action: Action = "migrate"
    dry_run: StrictBool = False
    requested_by: str | None = Field(default=None, max_length=128)
    requested_at: datetime | None = None
    attempt: StrictInt = Field(default=1, ge=1)
    reason: str | None = Field(default=None, max_length=512)
    # The run the request belongs to, if any: its outcome carries it, the run's counts use it.
    run_id: str | None = Field(default=None, pattern=RUN_ID_PATTERN)


class OutcomeError(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    code: ErrorCode
    message: str
    retryable: bool


class BcmRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    version: int = Field(ge=1)
    checksum: str = Field(pattern=r"^[0-9a-f]{64}$")
    token_estimate: int = Field(ge=0)


class _OutcomeFields(BaseModel):
    """Every field an outcome event carries on the wire, in their order: each kind below says
    which are its own (the others stay null, so every outcome has the same keys)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: int = SCHEMA_VERSION
    event_id: UUID
    request_id: UUID
    user_id: str
    action: Action
    outcome: OutcomeKind
    dry_run: bool = False
    already_done: bool = False
    session_id: UUID | None = None
    session_status: SessionStatusName | None = None
    completion_percentage: float | None = None
    steps_completed: int | None = None
    steps_total: int = 24
    bcm: BcmRef | None = None
    error: OutcomeError | None = None
    attempt: int = Field(default=1, ge=1)
    run_id: str | None = None
    duration_ms: float = Field(
        default=0.0,
        description="The worker's time for this request: its share of the set-based wave that "
        "decided and wrote it (the wave's time divided by its requests); 0 for an answer given "
        "again. Not the request's latency (record to outcome: the metrics' histogram).",
    )
    processed_at: datetime
    request: dict[str, Any] | None = None
    legacy_snapshot_sha256: str | None = None
    restored_legacy_sha256: str | None = None
    matches_snapshot: bool | None = None


class MigratedOutcome(_OutcomeFields):
    """A user migrated now, or before (``already_done``): the session, its status and its
    manifest (``bcm``), and the SHA-256 of the legacy snapshot the session keeps."""

    outcome: Literal["migrated"] = "migrated"
    error: None = None
    request: None = None


class FailedOutcome(_OutcomeFields):
    """A request that could not be applied: why (``error``: code, message, whether a retry
    may cure it) and the original request, so that a replay can publish it again."""

    outcome: Literal["failed"] = "failed"
    error: OutcomeError
    request: dict[str, Any]


class RolledBackOutcome(_OutcomeFields):
    """A session deleted and its legacy row restored: the session it was, the restored row's
    SHA-256 and whether it matches the snapshot taken at migration."""

    outcome: Literal["rolled_back"] = "rolled_back"
    error: None = None
    request: None = None


# An outcome event: one of the three kinds, told apart by ``outcome`` (the same JSON as when it
# was one wide model; the type now says what each kind carries).
Outcome = Annotated[
    MigratedOutcome | FailedOutcome | RolledBackOutcome, Field(discriminator="outcome")
]
OUTCOME: TypeAdapter[Outcome] = TypeAdapter(Outcome)


def parse_outcome_json(data: bytes | str) -> Outcome:
    """An outcome from its JSON text, as published."""
    return OUTCOME.validate_json(data)


class DeadLetterOriginal(BaseModel):
    """The rejected record, its bytes base64-encoded and never altered.

    ``headers`` is a list of ``[name, value_b64]`` pairs: Kafka allows repeated header names and
    arbitrary bytes, which a JSON object of strings could not carry.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key_b64: str | None
    value_b64: str | None
    headers: list[list[str | None]] = Field(default_factory=list)


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: int = SCHEMA_VERSION
    reason: DeadLetterReason
    message: str
    original: DeadLetterOriginal


@dataclass(frozen=True)
class Rejection:
    """Why a record cannot be accepted; it goes to the dead-letter topic with this reason."""

    reason: DeadLetterReason
    message: str


def decode_request(key: bytes | None, value: bytes | None) -> MigrationRequest | Rejection:
    if value is None:
        return Rejection(DeadLetterReason.NOT_JSON, "the record has no value")
    if len(value) > MAX_RECORD_BYTES:
        return Rejection(
            DeadLetterReason.TOO_LARGE,
            f"the value is {len(value)} bytes; at most {MAX_RECORD_BYTES} are accepted",
        )
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(DeadLetterReason.NOT_UTF8, f"the value is not UTF-8: {exc}")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return Rejection(DeadLetterReason.NOT_JSON, f"the value is not JSON: {exc}")
    if not isinstance(document, dict):
        return Rejection(DeadLetterReason.NOT_JSON, "the value must be a JSON object")
    action = document.get("action", "migrate")
    if action not in ("migrate", "rollback"):
        return Rejection(
            DeadLetterReason.UNKNOWN_ACTION,
            f"action must be 'migrate' or 'rollback', not {action!r}",
        )
    version = document.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
        return Rejection(
            DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION,
            f"schema_version {version} is not supported; this service reads {SCHEMA_VERSION}",
        )
    try:
        request = MigrationRequest.model_validate(document)
    except ValidationError as exc:
        return Rejection(DeadLetterReason.INVALID_REQUEST, describe(exc))
    if key is None:
        return Rejection(DeadLetterReason.KEY_MISMATCH, "the record has no key; it must be user_id")
    if key != request.user_id.encode("utf-8"):
        return Rejection(
            DeadLetterReason.KEY_MISMATCH,
            f"the record key {_shown(key)} is not the user_id {json.dumps(request.user_id)}",
        )
    return request


def _shown(key: bytes) -> str:
    """A record key as an operator reads it: quoted text, not a Python bytes literal."""
    text = key[:140].decode("utf-8", errors="replace")
    return json.dumps(text + ("…" if len(key) > 140 else ""), ensure_ascii=False)


def describe(error: ValidationError) -> str:
    """One line per problem: ``field: what is wrong``."""
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "value"
        message = item["msg"]
        if item["type"] == "string_pattern_mismatch" and field == "user_id":
            message = f"must be {USER_ID_RULE}"
        parts.append(f"{field}: {message}")
    return "; ".join(parts)
