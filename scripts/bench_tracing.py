"""What one request span costs the worker, by the path it takes: µs of process CPU per span.

Why a micro-benchmark: ``make bench --tracing`` says what tracing costs a flood, but on a shared
machine its noise is the size of the effect; this isolates the request spans, which are one per
record and so nearly all of tracing's cost. The spans are the worker's own: the content a
migrated request's span has (a continued trace, three links, three attributes), made by the code
the worker runs (``streams.tracing``, ``streams.span_export``), in batches of 500.

- ``sdk``: made through the SDK (``Traced``'s SDK path: console exporter, or no route for
  encoded bytes), through its batch span processor, encoded by the OTLP exporter's encoder.
- ``sdk + send``: the same, POSTed by the OTLP/HTTP exporter to an in-process receiver.
- ``encode``: the plain values encoded straight to OTLP protobuf (``SpanEncoder``).
- ``encode + send``: through ``SpanExport`` (queue, thread, encoding) and the exporter's HTTP
  client on the worker's transport (``streams.otlp_transport``) to the receiver.
- ``worker, all in``: what tracing adds to a batch per record, from the records: parsing each
  ``traceparent``, planning ids, sampling, the batch and stage spans, attributes, encoding and
  sending (``new_tracing`` as the worker runs it, to the receiver).

CPU is the whole process's (every thread): the receiver's decoding is in it, a little over
what the worker pays. ``.venv/bin/python scripts/bench_tracing.py [--spans N]``.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable, Sequence
from os import environ

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from otlp_receiver import OtlpReceiver

from schemas.events import DeadLetterReason, Rejection
from streams.codecs import Consumed, Origin
from streams.otlp_transport import new_span_exporter
from streams.settings import Settings
from streams.span_export import (
    BatchSpans,
    ExportLimits,
    OtlpHttpSender,
    RequestSpan,
    SpanEncoder,
    SpanExport,
    private_post,
)
from streams.stack.ports import free_port
from streams.trace_context import new_trace
from streams.traced import Traced, _PlannedIds
from streams.tracing import (
    KAFKA_SPAN,
    POSTGRES_SPAN,
    REDIS_SPAN,
    REQUEST_SPAN,
    SCOPE,
    new_tracing,
)

BATCH = 500
RESOURCE = Resource.create({"service.name": "onboarding-migrator-bench"})


def batches(spans: int) -> list[BatchSpans]:
    """What the worker hands over per batch of migrated requests, each continuing its trace."""
    links = tuple((new_trace_int(), new_span_int(), 1) for _ in range(3))
    out = []
    for first in range(0, spans, BATCH):
        requests = []
        for offset in range(first, min(first + BATCH, spans)):
            parent = new_trace()
            requests.append(
                RequestSpan(
                    parent.trace_id,
                    new_trace().span_id,
                    parent,
                    offset=offset,
                    request_id=uuid.uuid4(),
                    answer="migrated",
                )
            )
        now = time.time_ns()
        out.append(BatchSpans(now, now + 40_000_000, links, None, requests))
    return out


def new_trace_int() -> int:
    return int(new_trace().trace_id, 16)


def new_span_int() -> int:
    return int(new_trace().span_id, 16)


class EncodeOnly(SpanExporter):
    """The OTLP exporter's encoding, without the HTTP."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode_spans(spans).SerializePartialToString()
        return SpanExportResult.SUCCESS


def sdk_path(exporter: SpanExporter, spans: int) -> Callable[[list[BatchSpans]], None]:
    processor = BatchSpanProcessor(exporter, max_queue_size=spans, schedule_delay_millis=200)
    provider = TracerProvider(resource=RESOURCE, id_generator=_PlannedIds())  # type: ignore[arg-type]
    provider.add_span_processor(processor)
    out = Traced(provider).out

    def run(work: list[BatchSpans]) -> None:
        for batch in work:
            out(batch)
        provider.force_flush()
        provider.shutdown()

    return run


def encode_path() -> Callable[[list[BatchSpans]], None]:
    encode = SpanEncoder(RESOURCE, SCOPE, REQUEST_SPAN).encode

    def run(work: list[BatchSpans]) -> None:
        for batch in work:
            encode(batch)

    return run


def export_path(endpoint: str, spans: int) -> Callable[[list[BatchSpans]], None]:
    """Through the exporter the worker makes (``new_span_exporter``: its http.client
    transport), given ``endpoint``."""
    exporter = new_span_exporter(endpoint)
    post = private_post(exporter)
    assert post is not None, "this exporter has no client.export(bytes)"
    encoder = SpanEncoder(RESOURCE, SCOPE, REQUEST_SPAN)
    export = SpanExport(OtlpHttpSender(exporter, post), encoder, ExportLimits(spans, 0.2, 512))

    def run(work: list[BatchSpans]) -> None:
        for batch in work:
            export.put(batch)
        export.shutdown()
        assert export.dropped == 0

    return run


def records(spans: int) -> list[list[Consumed]]:
    """Request records in batches, each carrying a trace of its own."""
    return [
        [
            Consumed(
                Origin("user-migration-requested", 0, n, None), b"u", b"{}", new_trace().headers()
            )
            for n in range(first, min(first + BATCH, spans))
        ]
        for first in range(0, spans, BATCH)
    ]


def worker_path(spans: int) -> Callable[[list[BatchSpans]], None]:
    tracing = new_tracing(Settings(tracing="otlp", batch_size=BATCH))
    work = records(spans)
    rejection = Rejection(DeadLetterReason.NOT_JSON, "not JSON")

    def run(_: list[BatchSpans]) -> None:
        for batch in work:
            with tracing.batch(batch, 0) as trace:
                with tracing.stage(POSTGRES_SPAN), tracing.stage(REDIS_SPAN):
                    pass
                with trace.stage(KAFKA_SPAN):
                    pass
                trace.answered([(record, rejection) for record in batch])
        tracing.shutdown()

    return run


def measure(make: Callable[[], Callable[[list[BatchSpans]], None]], spans: int) -> float:
    """µs of process CPU per span, the best of three runs (the least disturbed)."""
    best = float("inf")
    for _ in range(3):
        work = batches(spans)
        run = make()
        started = time.process_time()
        run(work)
        best = min(best, time.process_time() - started)
    return best / spans * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=10_000, help="request spans per run")
    spans = parser.parse_args().spans
    with OtlpReceiver(free_port(), keep=False) as receiver:
        endpoint = f"{receiver.endpoint}/v1/traces"
        figures = {
            "sdk": measure(lambda: sdk_path(EncodeOnly(), spans), spans),
            "sdk + send": measure(
                lambda: sdk_path(OTLPSpanExporter(endpoint=endpoint), spans), spans
            ),
            "encode": measure(encode_path, spans),
            "encode + send": measure(lambda: export_path(endpoint, spans), spans),
        }
        environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
        # Nothing in this loop waits, as the worker waits for its servers: room for every span,
        # so that what is measured is their cost, not how many the queue drops.
        environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(2 * spans)
        figures["worker, all in"] = measure(lambda: worker_path(spans), spans)
        assert receiver.count >= 9 * spans, f"{receiver.count} spans received"
    print(f"µs of CPU per request span ({spans:,} spans, batches of {BATCH}, best of 3):")
    for path, micros in figures.items():
        print(f"  {path:<15} {micros:6.1f}")


if __name__ == "__main__":
    main()
