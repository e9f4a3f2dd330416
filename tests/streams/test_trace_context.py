"""W3C trace context in Kafka headers: parsing, one traceparent per answer, and when tracing is
on (the spans themselves: ``test_span_export``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.core.decide import Work
from agents.core.outcomes import failed_outcome
from schemas.events import DeadLetterReason, ErrorCode, MigrationRequest, Rejection
from streams import trace_context
from streams.codecs import Answer, Consumed, Origin, batch_records
from streams.requests_out import new_request
from streams.settings import Settings, SettingsError, tracing_from
from streams.trace_context import (
    TraceContext,
    continued_or_new,
    incoming,
    new_trace,
    new_traces,
    parse_traceparent,
    planned_trace,
    without_trace_headers,
)
from streams.tracing import Untraced

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_a_valid_traceparent_is_read_field_by_field() -> None:
    context = parse_traceparent(PARENT.encode())
    assert context == TraceContext(TRACE_ID, "00f067aa0ba902b7", "01")
    assert context.traceparent == PARENT and context.sampled
    assert not TraceContext(TRACE_ID, "00f067aa0ba902b7", "00").sampled


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"\xff\xfe",
        "garbage",
        PARENT.upper(),  # uppercase hex is not W3C
        PARENT + "-extra",  # version 00 has exactly four fields
        f"ff-{TRACE_ID}-00f067aa0ba902b7-01",  # version ff is invalid
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # zero parent id
        f"00-{TRACE_ID}-00f067aa0ba902b7-0g",
        f"00_{TRACE_ID}-00f067aa0ba902b7-01",
        f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01",
    ],
)
def test_an_invalid_traceparent_is_no_trace(value: bytes | str | None) -> None:
    assert parse_traceparent(value) is None


def test_a_later_version_is_read_by_its_first_fields_and_answered_as_version_00() -> None:
    context = parse_traceparent(f"01-{TRACE_ID}-00f067aa0ba902b7-01-what-comes-later")
    assert context is not None and context.traceparent == PARENT


@given(st.binary(max_size=80) | st.text(max_size=80))
def test_no_value_makes_parsing_fail(value: bytes | str) -> None:
    context = parse_traceparent(value)
    assert context is None or parse_traceparent(context.traceparent) == context


def test_a_record_s_trace_is_its_one_traceparent_with_its_tracestate() -> None:
    headers: list[tuple[str, bytes | None]] = [
        ("Traceparent", PARENT.encode()),
        ("tracestate", b"vendor=1"),
        ("TRACESTATE", b"other=2"),
    ]
    assert incoming(headers) == TraceContext(TRACE_ID, "00f067aa0ba902b7", "01", "vendor=1,other=2")
    # Two traceparents: which one would be meant? None (the worker starts a new trace).
    assert incoming([("traceparent", PARENT.encode())] * 2) is None
    # A tracestate without a valid traceparent is not read.
    assert incoming([("traceparent", b"bad"), ("tracestate", b"v=1")]) is None
    assert incoming(None) is None and incoming([]) is None


def test_new_and_planned_traces_are_valid_and_planned_ones_are_fixed_by_their_plan() -> None:
    fresh = new_trace()
    assert parse_traceparent(fresh.traceparent) == fresh and fresh.sampled
    assert new_trace().trace_id != fresh.trace_id
    plan, request = uuid.uuid4(), uuid.uuid4()
    planned = planned_trace(plan, request)
    assert planned == planned_trace(plan, request)
    assert parse_traceparent(planned.traceparent) == planned
    assert planned_trace(uuid.uuid4(), request).trace_id != planned.trace_id


def test_a_batch_s_new_traces_are_valid_and_distinct_even_when_the_draw_holds_zeros(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    traces = new_traces(500)
    assert all(parse_traceparent(trace.traceparent) == trace and trace.sampled for trace in traces)
    assert len({trace.trace_id for trace in traces}) == len({t.span_id for t in traces}) == 500
    assert new_traces(0) == []
    # A draw of zeros (one span id in 2^64): every id of zeros is made again, valid.
    monkeypatch.setattr(trace_context.random, "randbytes", lambda size: bytes(size))
    assert all(parse_traceparent(trace.traceparent) == trace for trace in new_traces(3))


def test_each_record_keeps_its_own_trace_and_the_others_get_new_ones_in_order() -> None:
    kept = [("traceparent", PARENT.encode()), ("tracestate", b"v=1")]
    traces = continued_or_new([[], kept, None, [("other", b"x")], kept])
    assert traces[1] == traces[4] == TraceContext(TRACE_ID, "00f067aa0ba902b7", "01", "v=1")
    fresh = [traces[0], traces[2], traces[3]]
    fresh_ids = {trace.trace_id for trace in fresh}
    assert len(fresh_ids) == 3 and TRACE_ID not in fresh_ids
    assert all(parse_traceparent(trace.traceparent) == trace for trace in fresh)


def test_without_trace_headers_keeps_the_others_in_order() -> None:
    headers: list[tuple[str, bytes | None]] = [
        ("a", b"1"),
        ("TraceParent", b"x"),
        ("b", None),
        ("tracestate", b"y"),
    ]
    assert without_trace_headers(headers) == [("a", b"1"), ("b", None)]


def _record(offset: int, value: bytes, headers: list[tuple[str, bytes | None]]) -> Consumed:
    return Consumed(Origin("user-migration-requested", 0, offset, None), b"u-1", value, headers)


def _names(headers: object) -> list[str]:
    return [name.lower() for name, _ in headers]  # type: ignore[attr-defined]


def test_every_answer_carries_exactly_one_traceparent_of_its_request_s_trace() -> None:
    request = new_request("u-1", requested_by="test", now=datetime.now(UTC))
    carried: list[tuple[str, bytes | None]] = [
        ("traceparent", PARENT.encode()),
        ("tracestate", b"v=1"),
        ("x-upstream", b"kept"),
    ]
    records = [
        _record(1, b"not json", carried),  # a dead letter of a traced request
        _record(2, b"not json", [("traceparent", b"invalid"), ("traceparent", PARENT.encode())]),
        _record(3, b"{}", []),
    ]
    outcome = _outcome(request)
    rejection = Rejection(DeadLetterReason.NOT_JSON, "not JSON")
    answers: list[tuple[Consumed, Answer]] = [
        (records[0], rejection),
        (records[1], rejection),
        (records[2], outcome),
    ]
    traces = [Untraced().batch(records, 0).contexts[i] for i in range(3)]
    sends = batch_records(answers, traces)
    first, second, third = (list(send.headers) for send in sends)
    for headers in (first, second, third):
        assert _names(headers).count("traceparent") == 1
        assert _names(headers).count("tracestate") <= 1
    # Continued: the request's own traceparent is replaced by the answer's, never doubled.
    assert dict(first)["traceparent"] == PARENT.encode() and dict(first)["tracestate"] == b"v=1"
    assert dict(first)["x-upstream"] == b"kept"
    # Two (or invalid) traceparents: a new trace.
    assert parse_traceparent(dict(second)["traceparent"]).trace_id != TRACE_ID  # type: ignore[union-attr]
    assert parse_traceparent(dict(third)["traceparent"]) is not None


def _outcome(request: MigrationRequest) -> Answer:
    work = Work(request, 0, 3, None, b"")
    outcome = failed_outcome(
        work, ErrorCode.USER_NOT_FOUND, "no row", now=datetime.now(UTC), duration_ms=0.0
    )
    return outcome, outcome.model_dump_json().encode()


def test_tracing_is_off_unless_the_otel_variables_ask() -> None:
    assert tracing_from({}) == "off"
    assert tracing_from({"OTEL_SERVICE_NAME": "x"}) == "off"
    assert tracing_from({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) == "otlp"
    assert tracing_from({"OTEL_TRACES_EXPORTER": "console"}) == "console"
    assert tracing_from({"OTEL_TRACES_EXPORTER": "otlp"}) == "otlp"
    assert (
        tracing_from({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}) == "off"
    )
    assert tracing_from({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}) == "off"
    assert Settings.from_env({"OTEL_TRACES_EXPORTER": "otlp"}).tracing == "otlp"
    with pytest.raises(SettingsError, match="OTEL_TRACES_EXPORTER"):
        tracing_from({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        tracing_from({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


def test_tracing_off_loads_no_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from streams.settings import Settings; from streams.tracing import "
        "new_tracing; from streams.codecs import Consumed, Origin;"
        "t = new_tracing(Settings.from_env({}));"
        "b = t.batch([Consumed(Origin('t', 0, 0, None), b'k', b'v', [])], 0);"
        "assert len(b.contexts) == 1;"
        "print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
