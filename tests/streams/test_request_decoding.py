"""The edge decoder: every dead-letter reason of contract §4, and what a valid request means."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from schemas.events import MigrationRequest, Rejection, decode_request


def value(**fields: Any) -> bytes:
    return json.dumps({"request_id": str(uuid.uuid4()), "user_id": "user-1", **fields}).encode()


def reason(key: bytes | None, raw: bytes | None) -> str:
    result = decode_request(key, raw)
    assert isinstance(result, Rejection), result
    assert result.message
    return result.reason.value


def test_minimal_request_gets_the_contract_defaults() -> None:
    request = decode_request(b"user-1", value())
    assert isinstance(request, MigrationRequest)
    assert (request.action, request.dry_run, request.attempt, request.schema_version) == (
        "migrate",
        False,
        1,
        1,
    )


def test_full_request_and_unknown_fields_are_accepted() -> None:
    raw = value(
        action="rollback",
        dry_run=True,
        attempt=3,
        requested_by="ops",
        reason="é" * 512,
        requested_at="2026-11-23T10:00:00Z",
        extra={"ignored": True},
    )
    request = decode_request(b"user-1", raw)
    assert isinstance(request, MigrationRequest)
    assert request.action == "rollback" and request.dry_run and request.attempt == 3


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"x" * (1024 * 1024 + 1), "too_large"),
        (b"\xff\xfe{}", "not_utf8"),
        (b"{nope", "not_json"),
        (b"[1, 2]", "not_json"),
        (None, "not_json"),
        (value(action="delete"), "unknown_action"),
        (value(schema_version=2), "unsupported_schema_version"),
        (json.dumps({"user_id": "user-1"}).encode(), "invalid_request"),
        (value(request_id="not-a-uuid"), "invalid_request"),
        (value(user_id="has space"), "invalid_request"),
        (value(user_id="u" * 129), "invalid_request"),
        (value(user_id=""), "invalid_request"),
        (value(dry_run="yes"), "invalid_request"),
        (value(attempt="1"), "invalid_request"),
        (value(attempt=0), "invalid_request"),
        (value(reason="r" * 513), "invalid_request"),
        (value(requested_by="b" * 129), "invalid_request"),
        (value(schema_version="1"), "invalid_request"),
    ],
)
def test_invalid_records_are_rejected_with_their_reason(raw: bytes | None, expected: str) -> None:
    assert reason(b"user-1", raw) == expected


def test_key_must_be_present_and_equal_to_the_user_id() -> None:
    assert reason(None, value()) == "key_mismatch"
    assert reason(b"user-2", value()) == "key_mismatch"
    result = decode_request(b"someone-else", value())
    assert isinstance(result, Rejection)
    assert result.message == 'the record key "someone-else" is not the user_id "user-1"'


def test_messages_name_the_field_at_fault() -> None:
    result = decode_request(b"user-1", value(user_id="bad id!", attempt="x"))
    assert isinstance(result, Rejection)
    assert "user_id" in result.message and "attempt" in result.message
