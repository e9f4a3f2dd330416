"""Dead letters keep the original bytes; headers and metrics are well-formed text."""

from __future__ import annotations

import base64
import json

from agents.core import counters
from schemas.events import DeadLetter, DeadLetterReason
from streams.codecs import HEADER_PREFIX, Origin, dead_letter, failure_headers
from streams.web.metrics import prometheus_text

ORIGIN = Origin("user-migration-requested", 3, 1234, 1_700_000_000_000)


def test_dead_letter_keeps_every_byte_of_the_original() -> None:
    key, value = None, b"\xff\x00 not utf-8 \xfe"
    raw, headers = dead_letter(
        ORIGIN,
        key=key,
        value=value,
        headers=[("h", b"\x01"), ("h", None)],
        reason=DeadLetterReason.NOT_UTF8,
        message="not UTF-8",
    )
    letter = DeadLetter.model_validate_json(raw)
    assert letter.reason is DeadLetterReason.NOT_UTF8 and letter.schema_version == 1
    assert letter.original.key_b64 is None
    assert base64.b64decode(letter.original.value_b64 or "") == value
    assert letter.original.headers == [["h", "AQ=="], ["h", None]]
    assert (letter.original.partition, letter.original.offset) == (3, 1234)
    assert dict(headers)[HEADER_PREFIX + "error-code"] == b"not_utf8"


def test_failure_headers_share_a_prefix_and_carry_text() -> None:
    headers = failure_headers(ORIGIN, code="user_not_found", retryable=True)
    names = [name for name, _ in headers]
    assert len(names) == len(set(names)) and all(n.startswith(HEADER_PREFIX) for n in names)
    values = {name.removeprefix(HEADER_PREFIX): raw.decode() for name, raw in headers}
    assert values == {
        "error-code": "user_not_found",
        "retryable": "true",
        "original-topic": "user-migration-requested",
        "original-partition": "3",
        "original-offset": "1234",
        "original-timestamp": "1700000000000",
    }


def test_prometheus_text_is_cumulative_and_complete() -> None:
    totals = counters.empty()
    totals["requested"] = totals["migrated"] = 3
    totals["failed_by_code"] = {"user_not_found": 2}
    totals["latency"] = {
        str(counters.latency_bucket(0.5)): 1,
        str(counters.latency_bucket(400_000)): 2,
    }
    text = prometheus_text(counters.summary(totals, now_s=0), totals)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert "migrator_requested_total 3" in lines
    assert 'migrator_failed_by_code_total{code="user_not_found"} 2' in lines
    buckets = [int(line.rsplit(" ", 1)[1]) for line in lines if "_bucket" in line]
    assert buckets == sorted(buckets) and buckets[-1] == 3
    assert 'migrator_request_to_outcome_seconds_bucket{le="+Inf"} 3' in lines
    assert json.dumps(counters.summary(totals, now_s=0), allow_nan=False)
