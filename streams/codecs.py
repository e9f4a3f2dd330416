"""Bytes at the edge: a consumed record as a plain value, the Kafka records a batch publishes,
dead letters and Kafka headers. Pure functions over plain values: no Faust, no I/O.

Header names share the ``migrator-`` prefix and carry UTF-8 text, one value per name, so tools can
filter failures and dead letters without parsing JSON (contract §3). Every answer also carries the
W3C ``traceparent`` (and ``tracestate``) of its request's trace, exactly once
(``streams.trace_context``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from schemas.events import (
    SCHEMA_VERSION,
    DeadLetter,
    DeadLetterOriginal,
    DeadLetterReason,
    Outcome,
    Rejection,
)
from streams import topics
from streams.trace_context import TraceContext, without_trace_headers

HEADER_PREFIX = "migrator-"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Origin:
    """Where a consumed record came from."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None


@dataclass(frozen=True)
class Send:
    """One Kafka record to publish: topic, key, value, headers (the partition is the batch's)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True)
class Consumed:
    """A request record as consumed: where it came from and its bytes."""

    origin: Origin
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]

    @classmethod
    def of(cls, message: Any) -> Consumed:
        """From a Faust message (``timestamp`` in seconds, maybe absent)."""
        timestamp = getattr(message, "timestamp", None)
        origin = Origin(
            message.topic,
            message.partition,
            message.offset,
            int(timestamp * 1000) if timestamp else None,
        )
        return cls(origin, message.key, message.value, list(message.headers or []))

    def digest(self) -> bytes:
        """What tells this record from another one at the same position: its key and value."""
        hasher = hashlib.blake2b(digest_size=16)
        key = self.key
        hasher.update(b"-" if key is None else b"+" + len(key).to_bytes(4, "big") + key)
        hasher.update(self.value or b"")
        return hasher.digest()


# An answer of a request record: its dead letter's reason, or its outcome and that outcome's
# JSON as stored in PostgreSQL (published byte for byte).
Answer = Rejection | tuple[Outcome, bytes]


def batch_records(
    answers: Sequence[tuple[Consumed, Answer]], traces: Sequence[TraceContext]
) -> list[Send]:
    """The Kafka records of a batch's answers, in the records' order: each outcome on its
    topic keyed by the user id, each rejection as a dead letter with the original bytes; every
    one names the request record it answers in its headers, and carries its trace
    (``traces``, one per answer, in the same order)."""
    return [
        _record(record, answer, trace)
        for (record, answer), trace in zip(answers, traces, strict=True)
    ]


def _record(record: Consumed, answer: Answer, trace: TraceContext) -> Send:
    origin = record.origin
    if isinstance(answer, Rejection):
        value, headers = dead_letter(
            origin,
            key=record.key,
            value=record.value,
            headers=record.headers,
            reason=answer.reason,
            message=answer.message,
            trace=trace,
        )
        return Send(topics.DEAD_LETTER, record.key, value, headers)
    outcome, json = answer
    error = outcome.error
    headers = (
        (
            origin_headers(origin)
            if error is None
            else failure_headers(origin, code=error.code.value, retryable=error.retryable)
        )
        + request_headers(outcome)
        + trace.headers()
    )
    return Send(
        topics.OUTCOME_TOPICS[outcome.outcome], outcome.user_id.encode("utf-8"), json, headers
    )


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
# On every outcome (all three topics): which request and which run it answers, so a consumer
# can route or filter outcomes without parsing the value (an addition to contract §3).
REQUEST_HEADERS = {
    "request-id": "the request_id the outcome answers",
    "run-id": "the run the request belongs to (empty if none)",
}
ORIGIN_TOPIC = HEADER_PREFIX + "original-topic"
ORIGIN_PARTITION = HEADER_PREFIX + "original-partition"
ORIGIN_OFFSET = HEADER_PREFIX + "original-offset"
ORIGIN_TIMESTAMP = HEADER_PREFIX + "original-timestamp"
REQUEST_ID = HEADER_PREFIX + "request-id"
RUN_ID = HEADER_PREFIX + "run-id"


# Written out rather than looped over the tables above: every answer carries them, and the loop
# (a dict, a prefix joined and a text encoded per header) cost about 2.5 µs an answer.
def origin_headers(origin: Origin) -> Headers:
    timestamp = origin.timestamp_ms
    return [
        (ORIGIN_TOPIC, origin.topic.encode("utf-8")),
        (ORIGIN_PARTITION, b"%d" % origin.partition),
        (ORIGIN_OFFSET, b"%d" % origin.offset),
        (ORIGIN_TIMESTAMP, b"" if timestamp is None else b"%d" % timestamp),
    ]


def request_headers(outcome: Outcome) -> Headers:
    run_id = outcome.run_id
    return [
        (REQUEST_ID, str(outcome.request_id).encode("ascii")),
        (RUN_ID, b"" if run_id is None else run_id.encode("utf-8")),
    ]


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
    trace: TraceContext,
) -> tuple[bytes, Headers]:
    """The dead-letter value (JSON bytes) and its headers; the original bytes are kept as base64.

    The original record's own headers follow the ``migrator-*`` ones as Kafka headers too (a
    tool that routes by header sees them on the dead letter), except any that claim the
    ``migrator-`` prefix and its trace headers: the service's headers are never two, and the
    dead letter's ``traceparent``/``tracestate`` are ``trace``'s (the request's trace as the
    worker continued it), one each. The envelope keeps the original headers all, unaltered.
    """
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
    carried = [
        (name, raw or b"")
        for name, raw in without_trace_headers(headers)
        if not name.lower().startswith(HEADER_PREFIX)
    ]
    return letter.model_dump_json().encode("utf-8"), (
        failure_headers(origin, code=reason, retryable=False) + carried + trace.headers()
    )
