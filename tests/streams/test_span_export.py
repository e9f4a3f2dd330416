"""The worker's spans as exported: request spans written to OTLP protobuf by hand, decoded here
with the generated OTLP classes, and the one queue and thread that export every span."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import get_current_span

from streams import traced
from streams.codecs import Consumed, Origin
from streams.otlp_transport import (
    CREDENTIAL_PROVIDER_VARIABLES,
    EnvironmentOnce,
    environment_once_session,
)
from streams.settings import Settings
from streams.span_export import (
    BatchSpans,
    ExportLimits,
    RequestSpan,
    SpanEncoder,
    SpanExport,
    StageSpan,
)
from streams.stack.ports import free_port
from streams.trace_context import TraceContext, new_trace
from streams.tracing import (
    BATCH_SPAN,
    KAFKA_SPAN,
    POSTGRES_SPAN,
    REDIS_SPAN,
    REQUEST_SPAN,
    SCOPE,
    new_tracing,
)

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
from otlp_receiver import OtlpReceiver, ReceiverError, ReceiverProcess  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
REQUEST_ID = UUID("6f1c3c1e-2b8a-4c4f-9d0e-6a1b2c3d4e5f")
# A stage span's attributes: every type and size the encoder writes apart (a string that is
# long, an int that is negative or large, and one that is a single byte).
STAGE = {"k": 3, "neg": -3, "big": 2**62, "topic": "user-migration-requested", "long": "x" * 300}
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
RESOURCE = Resource(
    {"service.name": "svc", "n": -3, "on": True, "ratio": 0.5, "list": ["a", "b"]},
    "https://schema/1",
)


class Kept:
    """A sender that keeps what it is given (and can hold the export thread up)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.closed = False
        self.go = threading.Event()
        self.go.set()

    def send(self, body: bytes) -> None:
        self.go.wait(10)
        self.bodies.append(body)

    def close(self) -> None:
        self.closed = True

    def requests(self) -> list[ExportTraceServiceRequest]:
        return [ExportTraceServiceRequest.FromString(body) for body in self.bodies]

    def spans(self) -> list[PbSpan]:
        return [
            span
            for request in self.requests()
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in any_value.array_value.values)
    return getattr(any_value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _batch(error: str | None = None, *, own: bool = False) -> BatchSpans:
    root = RequestSpan(
        f"{0xA1 << 100:032x}",
        f"{0xB2:016x}",
        None,
        offset=7,
        request_id=REQUEST_ID,
        answer="migrated",
    )
    continued = RequestSpan(
        TRACE_ID,
        f"{0xC3:016x}",
        TraceContext(TRACE_ID, "00f067aa0ba902b7", "01", "v=1"),
        offset=2**62,
        answer="dead_letter",
        error_code="not_json",
        published=False,
    )
    links = ((0xD4, 0xE5, 1), (0xD4, 0xF6, 1))
    stages = (
        StageSpan("batch", 0xE4, 0, 1_700_000_000_000_000_001, 1_700_000_000_500_000_002, STAGE),
        StageSpan("stage", 0xE5, 0xE4, 1_700_000_000_100_000_000, 1_700_000_000_200_000_000),
        StageSpan("failed", 0xF6, 0xE5, 1_700_000_000_150_000_000, 1_700_000_000_160_000_000),
    )
    stages[2].error = "Fenced: no"
    return BatchSpans(
        1_700_000_000_000_000_001,
        1_700_000_000_500_000_002,
        links,
        error,
        [root, continued],
        0xD4 if own else 0,
        stages if own else (),
    )


def test_a_request_span_decodes_field_by_field() -> None:
    body = SpanEncoder(RESOURCE, SCOPE, REQUEST_SPAN).encode(_batch("Fenced: no"))
    (resource_spans,) = ExportTraceServiceRequest.FromString(body).resource_spans
    assert _attributes(resource_spans.resource.attributes) == dict(RESOURCE.attributes)
    assert resource_spans.schema_url == "https://schema/1"
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == SCOPE and scope_spans.scope.version == ""
    root, continued = scope_spans.spans
    for span in (root, continued):
        assert span.name == REQUEST_SPAN and span.kind == PbSpan.SPAN_KIND_CONSUMER
        assert span.start_time_unix_nano == 1_700_000_000_000_000_001
        assert span.end_time_unix_nano == 1_700_000_000_500_000_002
        assert [(k.trace_id.hex(), k.span_id.hex(), k.flags) for k in span.links] == [
            (f"{0xD4:032x}", f"{0xE5:016x}", 0x101),
            (f"{0xD4:032x}", f"{0xF6:016x}", 0x101),
        ]
        assert span.status.code == PbStatus.STATUS_CODE_ERROR
        assert span.status.message == "Fenced: no"
        assert not span.events and not span.dropped_attributes_count
    assert root.trace_id == (0xA1 << 100).to_bytes(16, "big")
    assert root.span_id.hex() == f"{0xB2:016x}"
    assert root.parent_span_id == b"" and root.trace_state == ""
    assert root.flags == 0x101  # sampled; its parent (none) is not remote
    assert _attributes(root.attributes) == {
        "messaging.kafka.offset": 7,
        "migrator.request_id": str(REQUEST_ID),
        "migrator.answer": "migrated",
    }
    assert continued.trace_id.hex() == TRACE_ID and continued.span_id.hex() == f"{0xC3:016x}"
    assert continued.parent_span_id.hex() == "00f067aa0ba902b7"
    assert continued.trace_state == "v=1"
    assert continued.flags == 0x301  # sampled, child of a remote parent
    assert _attributes(continued.attributes) == {
        "messaging.kafka.offset": 2**62,
        "migrator.answer": "dead_letter",
        "migrator.error_code": "not_json",
        "migrator.published": False,
    }


def test_a_batch_s_spans_say_what_the_sdk_would_have_said() -> None:
    """The same spans made through the SDK (the console and fallback path) and encoded by the
    OTLP exporter's encoder: equal but for the W3C flags, which the SDK's encoder leaves out."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE, id_generator=traced._PlannedIds())  # type: ignore[arg-type]
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traced.Traced(provider).out(_batch("Fenced: no", own=True))
    sdk = ExportTraceServiceRequest.FromString(
        encode_spans(exporter.get_finished_spans()).SerializeToString()
    )
    ours = ExportTraceServiceRequest.FromString(
        SpanEncoder(RESOURCE, SCOPE, REQUEST_SPAN).encode(_batch("Fenced: no", own=True))
    )
    names = [span.name for span in ours.resource_spans[0].scope_spans[0].spans]
    assert names == [REQUEST_SPAN, REQUEST_SPAN, "batch", "stage", "failed"]
    for request in (sdk, ours):
        for span in request.resource_spans[0].scope_spans[0].spans:
            span.flags &= ~0xFF
            for link in span.links:
                link.flags &= ~0xFF
    assert ours == sdk


def test_attributes_encoded_once_and_reused_say_the_same_and_unique_values_are_not_kept() -> None:
    """The encoder keeps the fields of attributes with few string values (an answer, an error
    code) and the heads of the others; what it writes from them is what it writes afresh, ids
    that never repeat are not kept, and an int is never mistaken for the bool it hashes alike."""
    encoder = SpanEncoder(RESOURCE, SCOPE, REQUEST_SPAN)
    spans = [
        RequestSpan(
            f"{n + 1:032x}",
            f"{n + 1:016x}",
            None,
            offset=n * 1_000_003,  # varints of one to five bytes
            request_id=UUID(int=n),
            answer="failed" if n % 3 else "migrated",
            published=n % 2 == 0,
        )
        for n in range(300)
    ]
    batch = BatchSpans(1, 2, (), None, spans)
    first, again = encoder.encode(batch), encoder.encode(batch)
    assert first == again == SpanEncoder(RESOURCE, SCOPE, REQUEST_SPAN).encode(batch)
    decoded = ExportTraceServiceRequest.FromString(again).resource_spans[0].scope_spans[0].spans
    for n, span in enumerate(decoded):
        attributes = {pair.key: pair.value for pair in span.attributes}
        assert attributes["messaging.kafka.offset"].int_value == n * 1_000_003
        assert attributes["migrator.request_id"].string_value == str(UUID(int=n))
        assert attributes["migrator.answer"].string_value == ("failed" if n % 3 else "migrated")
        if n % 2:
            assert attributes["migrator.published"].WhichOneof("value") == "bool_value"
            assert attributes["migrator.published"].bool_value is False
        else:
            assert "migrator.published" not in attributes
    kept_keys = [key for key, _ in encoder._fields]
    assert kept_keys.count("migrator.answer") == 2
    assert kept_keys.count("migrator.request_id") <= 64  # the first ones, then no more
    assert "migrator.published" not in kept_keys and "messaging.kafka.offset" not in kept_keys


def test_a_batch_larger_than_an_export_is_exported_in_parts() -> None:
    kept = Kept()
    export = SpanExport(kept, _encoder(), ExportLimits(10, 60, 2, 5))
    spans = [RequestSpan(f"{n + 1:032x}", f"{n + 1:016x}", None) for n in range(5)]
    export.put(BatchSpans(1, 2, (), None, spans))
    export.shutdown()
    assert [len(_spans_of(body)) for body in kept.bodies] == [2, 2, 1]
    assert sorted(span.span_id[-1] for span in kept.spans()) == [1, 2, 3, 4, 5]


def test_exports_are_filled_to_their_batch_size_by_splitting_a_batch() -> None:
    """Three batches of 3 request spans and 2 own spans each, exports of at most 4: every export
    but the last carries 4, a batch's spans split between two exports where it does not fit,
    and every span is exported once, the own ones in their batch's trace. (An export is due
    only once 4 spans wait, or at shutdown: whenever the thread takes, it is the same.)"""
    kept = Kept()
    export = SpanExport(kept, _encoder(), ExportLimits(100, 600, 4, 5))
    for batch in range(3):
        own = [StageSpan(f"stage {batch}-{n}", 1000 + 10 * batch + n, 0, 1, 2) for n in range(2)]
        spans = [
            RequestSpan(f"{10 * batch + n + 1:032x}", f"{10 * batch + n + 1:016x}", None)
            for n in range(3)
        ]
        export.put(BatchSpans(1, 2, (), None, spans, trace_id=batch + 1, own=own))
    kept.go.set()
    export.shutdown()
    assert [len(_spans_of(body)) for body in kept.bodies] == [4, 4, 4, 3]
    exported = kept.spans()
    assert len(exported) == 15 and len({span.span_id for span in exported}) == 15
    for span in exported:
        if span.name.startswith("stage"):
            assert int.from_bytes(span.trace_id, "big") == int(span.name[6]) + 1


def test_a_batch_splits_anywhere_into_two_that_share_what_it_shares() -> None:
    own = [StageSpan("batch", 1, 0, 1, 2), StageSpan("stage", 2, 1, 1, 2)]
    spans = [RequestSpan(f"{n + 1:032x}", f"{n + 1:016x}", None) for n in range(3)]
    batch = BatchSpans(5, 6, ((7, 8, 1),), "boom", spans, trace_id=9, own=own)
    for first in range(batch.count + 1):
        head, rest = batch.split(first)
        assert head.count == first and rest.count == batch.count - first
        assert [*head.own, *rest.own] == own and [*head.spans, *rest.spans] == spans
        for part in (head, rest):
            assert (part.start_ns, part.end_ns, part.links, part.error, part.trace_id) == (
                5,
                6,
                ((7, 8, 1),),
                "boom",
                9,
            )
    assert [part.count for part in batch.parts(2)] == [2, 2, 1]


def test_a_full_queue_drops_spans_counts_them_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kept = Kept()
    kept.go.clear()  # the thread is held in its first export
    export = SpanExport(kept, _encoder(), ExportLimits(4, 0.01, 2, 5))
    export.put(_spans(2))
    _wait_for(lambda: export._exporting == 2)
    with caplog.at_level(logging.WARNING, "streams.span_export"):
        for _ in range(4):
            export.put(_spans(2))  # 4 fit, 4 do not
    assert export.dropped == 4
    assert len(caplog.records) == 1 and "OTEL_BSP_MAX_QUEUE_SIZE=4" in caplog.text
    kept.go.set()
    with caplog.at_level(logging.WARNING, "streams.span_export"):
        export.shutdown()
    assert len(kept.spans()) == 6
    assert "4 spans were dropped" in caplog.records[-1].message


def test_shutdown_exports_what_is_queued_and_closes_the_sender() -> None:
    kept = Kept()
    export = SpanExport(kept, _encoder(), ExportLimits(100, 600, 50, 5))  # never due by time
    export.put(_spans(3))
    assert kept.bodies == []
    export.shutdown()
    assert len(kept.spans()) == 3 and kept.closed


def test_force_flush_exports_now() -> None:
    kept = Kept()
    export = SpanExport(kept, _encoder(), ExportLimits(100, 600, 50, 5))
    export.put(_spans(3))
    assert export.force_flush(5000)
    assert len(kept.spans()) == 3
    export.shutdown()


def test_the_limits_are_the_batch_span_processor_s_variables(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert ExportLimits.from_env({}) == ExportLimits(2048, 5.0, 512, 30.0)
    env = {
        "OTEL_BSP_MAX_QUEUE_SIZE": "100",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1000",  # at most the queue
        "OTEL_BSP_EXPORT_TIMEOUT": "1500",
    }
    assert ExportLimits.from_env(env) == ExportLimits(100, 0.2, 100, 1.5)
    with caplog.at_level(logging.WARNING, "streams.span_export"):
        assert ExportLimits.from_env({"OTEL_BSP_MAX_QUEUE_SIZE": "x"}).max_queue_size == 2048
    assert "OTEL_BSP_MAX_QUEUE_SIZE" in caplog.text


def test_batches_larger_than_the_queue_are_warned_of_at_start(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "50")
    with caplog.at_level(logging.WARNING, "streams.traced"):
        new_tracing(Settings(batch_size=500), sender=Kept()).shutdown()
        assert "MIGRATOR_BATCH_SIZE=500 exceeds OTEL_BSP_MAX_QUEUE_SIZE=100" in caplog.text
        caplog.clear()
        new_tracing(Settings(batch_size=100), sender=Kept()).shutdown()
        assert caplog.text == ""


def _record(offset: int, headers: list[tuple[str, bytes | None]]) -> Consumed:
    return Consumed(Origin("user-migration-requested", 0, offset, None), b"u-1", b"{}", headers)


def test_each_request_span_continues_its_trace_and_links_to_the_batch_s_stages() -> None:
    kept = Kept()
    worker = new_tracing(Settings(), sender=kept)
    records = [
        _record(1, [("traceparent", PARENT.encode()), ("tracestate", b"v=1")]),
        _record(2, [("traceparent", b"invalid")]),
        _record(3, [("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-00".encode())]),
    ]
    with worker.batch(records, 0) as trace:
        with worker.stage(POSTGRES_SPAN), worker.stage(REDIS_SPAN):
            pass
        with trace.stage(KAFKA_SPAN):
            pass
        trace.unpublished()
        contexts = trace.contexts
    # Outside a batch, a stage is nothing.
    with worker.stage(POSTGRES_SPAN):
        pass
    worker.shutdown()
    assert len(kept.bodies) == 1  # the batch's spans, one POST
    (resource_spans,) = kept.requests()[0].resource_spans
    assert _attributes(resource_spans.resource.attributes)["service.name"] == "onboarding-migrator"
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == SCOPE
    requests = [span for span in scope_spans.spans if span.name == REQUEST_SPAN]
    spans = {span.name: span for span in scope_spans.spans if span.name != REQUEST_SPAN}
    assert set(spans) == {BATCH_SPAN, POSTGRES_SPAN, REDIS_SPAN, KAFKA_SPAN}
    for span in spans.values():
        assert span.kind == PbSpan.SPAN_KIND_INTERNAL and span.flags == 0x101
        assert span.end_time_unix_nano >= span.start_time_unix_nano > 0
        assert span.status.code == PbStatus.STATUS_CODE_UNSET
    assert _attributes(spans[BATCH_SPAN].attributes) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": "user-migration-requested",
        "messaging.destination.partition.id": "0",
        "messaging.batch.message_count": 3,
    }
    assert spans[BATCH_SPAN].parent_span_id == b""
    # The third record's parent was not sampled: no span, and its answer says so.
    continued, started = requests
    assert contexts[2].flags == "00" and contexts[2].trace_id == TRACE_ID
    assert continued.trace_id.hex() == TRACE_ID
    assert continued.parent_span_id.hex() == "00f067aa0ba902b7"
    assert started.parent_span_id == b"" and started.trace_id.hex() != TRACE_ID
    # What each answer carries: the request span's own context (and the tracestate).
    for span, context in zip((continued, started), contexts, strict=False):
        assert (span.trace_id.hex(), span.span_id.hex(), context.flags) == (
            context.trace_id,
            context.span_id,
            "01",
        )
        assert _attributes(span.attributes) == {"migrator.published": False}
    assert contexts[0].tracestate == "v=1" and contexts[1].tracestate is None
    # Links to every stage, and the stages' own tree: Redis inside PostgreSQL, both in the batch.
    stages = {spans[name].span_id for name in (POSTGRES_SPAN, REDIS_SPAN, KAFKA_SPAN)}
    for request in (continued, started):
        assert {link.span_id for link in request.links} == stages
        assert {link.trace_id for link in request.links} == {spans[BATCH_SPAN].trace_id}
        assert request.start_time_unix_nano >= spans[BATCH_SPAN].start_time_unix_nano
        assert request.end_time_unix_nano == spans[BATCH_SPAN].end_time_unix_nano
    batch = spans[BATCH_SPAN].span_id
    assert spans[POSTGRES_SPAN].parent_span_id == batch
    assert spans[KAFKA_SPAN].parent_span_id == batch
    assert spans[REDIS_SPAN].parent_span_id == spans[POSTGRES_SPAN].span_id


def test_a_failed_batch_marks_its_spans_failed_and_ends_them() -> None:
    kept = Kept()
    worker = new_tracing(Settings(), sender=kept)
    with pytest.raises(RuntimeError), worker.batch([_record(1, [])], 0) as trace:
        with trace.stage(KAFKA_SPAN):
            raise RuntimeError("fenced")
    worker.shutdown()
    finished = kept.spans()
    assert sorted(span.name for span in finished) == sorted({REQUEST_SPAN, BATCH_SPAN, KAFKA_SPAN})
    assert all(span.status.code == PbStatus.STATUS_CODE_ERROR for span in finished)
    assert all(span.end_time_unix_nano for span in finished)


def test_the_sdk_s_samplers_decide_by_the_parent_s_flags_others_by_the_parent_itself() -> None:
    class Plugin(Sampler):
        """A sampler from elsewhere: it may read anything of the parent."""

        def should_sample(
            self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any
        ) -> SamplingResult:
            if name == REQUEST_SPAN:
                seen.append(get_current_span(parent_context).get_span_context().span_id)
            return SamplingResult(Decision.RECORD_AND_SAMPLE)

        def get_description(self) -> str:
            return "plugin"

    seen: list[int] = []
    parents = [new_trace(), TraceContext(TRACE_ID, "00f067aa0ba902b7", "00"), new_trace()]
    records = [_record(n, parent.headers()) for n, parent in enumerate(parents)]
    for sampler, flags in (
        (Plugin(), ["01", "01", "01"]),
        (ParentBased(ALWAYS_ON), ["01", "00", "01"]),
    ):
        provider = TracerProvider(sampler=sampler, id_generator=traced._PlannedIds())  # type: ignore[arg-type]
        batch = traced.Traced(provider, lambda spans: None).batch(records, 0)
        assert [context.flags for context in batch.contexts] == flags
    assert seen == [int(parent.span_id, 16) for parent in parents]


@pytest.mark.parametrize(
    ("sampler", "by_flags_alone"),
    [
        (ParentBased(ALWAYS_ON), True),
        (ParentBased(ALWAYS_OFF), True),
        (ALWAYS_ON, True),
        (ALWAYS_OFF, True),
        (TraceIdRatioBased(0.5), False),
        (ParentBasedTraceIdRatio(0.5), False),
    ],
)
def test_a_request_span_is_sampled_as_its_sampler_says_asked_once_per_flags_when_it_can_be(
    sampler: Sampler, by_flags_alone: bool
) -> None:
    parents: list[TraceContext | None] = [None, new_trace(), None]
    parents += [
        TraceContext(f"{n:032x}", "00f067aa0ba902b7", ("00", "01")[n % 2]) for n in range(1, 80)
    ]
    records = [_record(n, [] if p is None else p.headers()) for n, p in enumerate(parents)]
    provider = TracerProvider(sampler=sampler, id_generator=traced._PlannedIds())  # type: ignore[arg-type]
    worker = traced.Traced(provider, lambda spans: None)
    asked: list[str] = []
    ask = sampler.should_sample

    def counted(*args: Any, **kwargs: Any) -> SamplingResult:
        asked.append(args[2])
        return ask(*args, **kwargs)

    sampler.should_sample = counted  # type: ignore[method-assign]
    try:
        batch = worker.batch(records, 0)
    finally:
        del sampler.should_sample
    expected = []
    for record in batch.contexts:
        trace_id = int(record.trace_id, 16)
        parent = next((p for p in parents if p is not None and p.trace_id == record.trace_id), None)
        context = traced.Context() if parent is None else traced._remote(parent)
        decision = sampler.should_sample(context, trace_id, REQUEST_SPAN, traced.SpanKind.CONSUMER)
        expected.append("01" if decision.decision is Decision.RECORD_AND_SAMPLE else "00")
    assert [context.flags for context in batch.contexts] == expected
    assert asked.count(REQUEST_SPAN) == (0 if by_flags_alone else len(records))
    assert bool(worker.decisions.by_parent) is by_flags_alone


def test_a_batch_whose_own_trace_is_sampled_out_exports_its_request_spans_alone() -> None:
    class RequestsOnly(Sampler):
        def should_sample(
            self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any
        ) -> SamplingResult:
            keep = Decision.RECORD_AND_SAMPLE if name == REQUEST_SPAN else Decision.DROP
            return SamplingResult(keep)

        def get_description(self) -> str:
            return "requests only"

    out: list[BatchSpans] = []
    provider = TracerProvider(sampler=RequestsOnly(), id_generator=traced._PlannedIds())  # type: ignore[arg-type]
    worker = traced.Traced(provider, out.append)
    with worker.batch([_record(1, [])], 0) as trace, trace.stage(KAFKA_SPAN):
        pass
    (batch,) = out
    assert len(batch.spans) == 1 and batch.own == ()
    ((_, _, flags),) = batch.links  # the stage it went through, by an id no exporter sees
    assert flags == 0


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    with OtlpReceiver(free_port()) as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.endpoint)
        yield running


@pytest.mark.parametrize("route", ["client", "sdk"])
def test_spans_reach_an_otlp_http_receiver_by_either_route(
    route: str,
    receiver: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``client``: bytes encoded here, POSTed by the exporter's client; ``sdk``: this exporter
    version has no such route, so every span is made through the SDK (said once)."""
    if route == "sdk":
        monkeypatch.setattr(traced, "private_post", lambda exporter: None)
    with caplog.at_level(logging.WARNING, "streams.traced"):
        worker = new_tracing(Settings(tracing="otlp"))
    assert ("spans go through the SDK" in caplog.text) == (route == "sdk")
    with worker.batch([_record(5, [("traceparent", PARENT.encode())])], 0) as trace:
        with trace.stage(KAFKA_SPAN):
            pass
        context = trace.contexts[0]
    worker.shutdown()
    by_name = {span.name: span for span in receiver.spans}
    assert set(by_name) == {REQUEST_SPAN, BATCH_SPAN, KAFKA_SPAN}
    request = by_name[REQUEST_SPAN]
    assert (request.trace_id, request.span_id) == (context.trace_id, context.span_id)
    assert request.parent_span_id == "00f067aa0ba902b7" and request.kind == 5
    assert request.links == ((by_name[KAFKA_SPAN].trace_id, by_name[KAFKA_SPAN].span_id),)
    assert {span.service for span in receiver.spans} == {"onboarding-migrator"}


def test_the_bench_s_receiver_process_counts_what_the_worker_s_export_sends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bench's collector stand-in, in a process of its own: the spans of a batch, sent by
    the worker's own export path, are counted there and read back from here."""
    with ReceiverProcess() as receiver:
        assert receiver.port and receiver.count == 0
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        worker = new_tracing(Settings(tracing="otlp"))
        with worker.batch([_record(n, []) for n in range(3)], 0) as trace:
            with trace.stage(KAFKA_SPAN):
                pass
        worker.shutdown()
        assert receiver.count == 3 + 2  # three request spans, the batch span and its stage


@pytest.mark.parametrize(
    ("program", "why"),
    [
        ("/bin/false", "it exited with code 1"),  # silent
        ("/bin/sh", ".*otlp_receiver.py: .*[Ss]yntax error"),  # the last line sh said of Python
    ],
)
def test_the_bench_s_receiver_process_says_why_it_did_not_start(
    program: str, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", program)
    with pytest.raises(ReceiverError, match=f"the OTLP receiver did not start: {why}"):
        with ReceiverProcess():
            pass


def test_the_exporter_s_session_reads_the_environment_as_requests_does_but_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import requests

    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "local.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/collector-ca.pem")
    once, plain = EnvironmentOnce(), requests.Session()
    urls = ("http://collector.example:4318/v1/traces", "http://local.example:4318/v1/traces")
    for url in urls:
        for verify in (True, "/etc/ssl/otlp.pem"):
            expected = plain.merge_environment_settings(url, {}, None, verify, None)
            assert once.merge_environment_settings(url, {}, None, verify, None) == expected
    first = once.merge_environment_settings(urls[0], {}, None, True, None)
    assert first["proxies"]["http"] == "http://proxy.example:3128"
    assert first["verify"] == "/etc/ssl/collector-ca.pem"
    proxies = dict(first["proxies"])
    first["proxies"].clear()  # what a caller does with its copy stays there
    monkeypatch.setenv("HTTP_PROXY", "http://elsewhere.example:3128")
    again = once.merge_environment_settings(urls[0], {}, None, True, None)
    assert again == {**first, "proxies": proxies}


@pytest.mark.parametrize("variable", CREDENTIAL_PROVIDER_VARIABLES)
def test_a_credential_provider_s_session_is_left_to_the_exporter(variable: str) -> None:
    assert isinstance(environment_once_session({}), EnvironmentOnce)
    assert environment_once_session({variable: "my-provider"}) is None


def test_spans_reach_the_collector_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The endpoint's host does not resolve: the spans arrive only by way of ``HTTP_PROXY``
    (here the receiver itself, which takes the proxied POST as it would a direct one)."""
    with OtlpReceiver(free_port()) as proxy:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.invalid:4318")
        monkeypatch.setenv("HTTP_PROXY", proxy.endpoint)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        worker = new_tracing(Settings(tracing="otlp"))
        with worker.batch([_record(5, [])], 0):
            pass
        worker.shutdown()
        assert {span.name for span in proxy.spans} == {REQUEST_SPAN, BATCH_SPAN}


def _encoder() -> SpanEncoder:
    return SpanEncoder(RESOURCE, SCOPE, REQUEST_SPAN)


def _spans(count: int) -> BatchSpans:
    spans = [RequestSpan(f"{n + 1:032x}", f"{n + 1:016x}", None) for n in range(count)]
    return BatchSpans(1, 2, (), None, spans)


def _spans_of(body: bytes) -> list[PbSpan]:
    return [
        span
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def _wait_for(condition: Any, timeout_s: float = 5) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("not reached in time")
