"""Bytes at the edge: dead letters and Kafka headers. Pure functions, no Faust, no I/O.

Header names share the ``migrator-`` prefix and carry UTF-8 text, one value per name, so tools can
filter failures and dead letters without parsing JSON (contract §3).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.events import SCHEMA_VERSION, DeadLetter, DeadLetterOriginal, DeadLetterReason

HEADER_PREFIX = "migrator-"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Origin:
    """Where a consumed record came from."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data is not None else None


# What each header says (without the prefix), for the AsyncAPI document. Every answer (each
# outcome and each dead letter) names the request record it answers: that is what lets the
# answer audit pair answers with requests without parsing a value (an addition to contract §3,
# which asks it of failures and dead letters only).
ORIGIN_HEADERS = {
    "original-topic": "topic of the request record",
    "original-partition": "its partition (decimal)",
    "original-offset": "its offset (decimal)",
    "original-timestamp": "its timestamp in ms since the epoch (decimal; empty if none)",
}
FAILURE_HEADERS = {
    "error-code": "the error code (failed outcomes) or the dead-letter reason",
    "retryable": "true or false",
    **ORIGIN_HEADERS,
}
ORIGIN_PARTITION = HEADER_PREFIX + "original-partition"
ORIGIN_OFFSET = HEADER_PREFIX + "original-offset"


def origin_headers(origin: Origin) -> Headers:
    values = {
        "original-topic": origin.topic,
        "original-partition": str(origin.partition),
        "original-offset": str(origin.offset),
        "original-timestamp": "" if origin.timestamp_ms is None else str(origin.timestamp_ms),
    }
    return [(HEADER_PREFIX + name, value.encode("utf-8")) for name, value in values.items()]


def failure_headers(origin: Origin, *, code: str, retryable: bool) -> Headers:
    values = {"error-code": code, "retryable": "true" if retryable else "false"}
    return [
        *((HEADER_PREFIX + name, value.encode("utf-8")) for name, value in values.items()),
        *origin_headers(origin),
    ]


def answered_offset(headers: Sequence[tuple[str, bytes | None]] | None) -> tuple[int, int] | None:
    """The request partition and offset an answer names in its headers (None if it names none:
    an answer published before every answer carried them)."""
    partition = offset = None
    for name, value in headers or ():
        if name == ORIGIN_OFFSET and value:
            offset = int(value)
        elif name == ORIGIN_PARTITION and value:
            partition = int(value)
    if partition is None or offset is None:
        return None
    return partition, offset


def dead_letter(
    origin: Origin,
    *,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    reason: DeadLetterReason,
    message: str,
) -> tuple[bytes, Headers]:
    """The dead-letter value (JSON bytes) and its headers; the original bytes are kept as base64."""
    letter = DeadLetter(
        schema_version=SCHEMA_VERSION,
        reason=reason,
        message=message,
        original=DeadLetterOriginal(
            topic=origin.topic,
            partition=origin.partition,
            offset=origin.offset,
            timestamp=origin.timestamp_ms,
            key_b64=_b64(key),
            value_b64=_b64(value),
            headers=[[name, _b64(raw)] for name, raw in headers],
        ),
    )
    return letter.model_dump_json().encode("utf-8"), failure_headers(
        origin, code=reason, retryable=False
    )
