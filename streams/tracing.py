"""The worker's tracing, chosen once: spans over OTLP when the ``OTEL_*`` variables ask, or none.

``new_tracing(settings)`` is the one place that decides (``Settings.tracing``, read from the
standard variables by ``streams.settings``). Downstream, the agent asks the object it returns
for a ``BatchTrace`` per batch and never tests the mode again:

- ``Untraced`` (the default): no OpenTelemetry SDK is even imported, no span is made. Each
  answer still carries its request's trace (``streams.trace_context``): the request's own
  ``traceparent`` passed through as it came, or a new trace when it had none or an invalid one.
- ``Traced``: an SDK tracer provider with a batch span processor and the OTLP/HTTP exporter
  (or the console exporter), configured by the SDK from the ``OTEL_*`` variables (endpoint,
  headers, timeouts, sampler, service name, resource): the variables are the SDK's documented
  contract, so they are read where the SDK reads them.

The spans of a batch: one ``process user-migration-requested`` span per request record (kind
consumer), a child of the record's ``traceparent`` (or the root of a new trace), and per batch a
``migrate batch`` span with the stages as its children: ``postgresql transaction`` (each try),
``redis mirror`` inside it, and ``kafka transaction``. A batch serves the requests of many
traces, and a span has one parent: so each request span *links* to the stage spans its batch
went through (OpenTelemetry's model for batch processing), rather than one request's trace
owning a batch that many requests share. Links sit on the request spans (three or so each)
and not on the stage spans, which would need one per request, past the SDK's 128-link limit.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from agents.batch_transaction import POSTGRES_STAGE, REDIS_STAGE
from schemas.events import Rejection
from streams.codecs import Answer, Consumed
from streams.settings import Settings
from streams.trace_context import TraceContext, continued_or_new, incoming

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Link, Span

log = logging.getLogger(__name__)

# The names of the spans, for the README and the tests (the batch applier names its own two).
REQUEST_SPAN = "process user-migration-requested"
BATCH_SPAN = "migrate batch"
POSTGRES_SPAN = POSTGRES_STAGE
REDIS_SPAN = REDIS_STAGE
KAFKA_SPAN = "kafka transaction"

_NO_SPAN: AbstractContextManager[None] = nullcontext()


class BatchTrace(Protocol):
    """One batch's trace: what each answer carries, and the spans of the batch's stages."""

    # Per consumed record, in order: the trace its answer carries.
    contexts: list[TraceContext]

    def __enter__(self) -> BatchTrace: ...

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None: ...

    def stage(
        self, name: str, attributes: Mapping[str, str | int] | None = None
    ) -> AbstractContextManager[None]:
        """A span for one stage of the batch (a transaction), linked to every request span."""
        ...

    def answered(self, answers: Sequence[tuple[Consumed, Answer]]) -> None:
        """What each request was answered (attributes of its span)."""
        ...

    def unpublished(self) -> None:
        """The answers were not published (a rebalance took the partition): the next owner
        answers the records, and says so in spans of its own."""
        ...


class WorkerTracing(Protocol):
    """What the agent and the batch applier need of tracing."""

    def batch(self, records: Sequence[Consumed], partition: int) -> BatchTrace: ...

    def stage(self, name: str) -> AbstractContextManager[None]:
        """A stage span of the batch the calling task is in (none outside a batch, or off)."""
        ...

    def shutdown(self) -> None:
        """Export what is still buffered (the worker stops)."""
        ...


class _PassThrough:
    """A batch when tracing is off: each answer carries its request's trace, no span is made."""

    def __init__(self, records: Sequence[Consumed]) -> None:
        self.contexts = [continued_or_new(record.headers) for record in records]

    def __enter__(self) -> _PassThrough:
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        return None

    def stage(
        self, name: str, attributes: Mapping[str, str | int] | None = None
    ) -> AbstractContextManager[None]:
        return _NO_SPAN

    def answered(self, answers: Sequence[tuple[Consumed, Answer]]) -> None:
        return None

    def unpublished(self) -> None:
        return None


class Untraced:
    """Tracing off: no SDK, no spans; answers carry their requests' traces all the same."""

    def batch(self, records: Sequence[Consumed], partition: int) -> BatchTrace:
        return _PassThrough(records)

    def stage(self, name: str) -> AbstractContextManager[None]:
        return _NO_SPAN

    def shutdown(self) -> None:
        return None


# The batch the running task is applying: the applier's stages find their batch here (the
# lanes run one batch per task at a time; each asyncio task has its own context).
_CURRENT: ContextVar[_SpanBatch | None] = ContextVar("migrator_batch_trace", default=None)


class _SpanBatch:
    """A batch when tracing is on: a span per request, a batch span, a span per stage.

    A request span is *made* once its batch is over, all at once, with what it is linked to
    and what it was answered: an SDK span costs about half as much that way as one made first
    and then given three links and its attributes one call at a time, and a request the sampler
    leaves out costs no span at all. Its ids are chosen when the batch begins, since its answer
    carries them (``contexts``), and handed to the SDK when it is made (``_PlannedIds``).
    """

    def __init__(self, traced: Traced, records: Sequence[Consumed], partition: int) -> None:
        from opentelemetry.context import Context
        from opentelemetry.sdk.trace.sampling import Decision
        from opentelemetry.trace import SpanKind

        sample = Decision.RECORD_AND_SAMPLE
        tracer = self._tracer = traced.tracer
        self._ids = traced.ids
        # What every request of the batch shares is said once, on the batch span.
        self._root = tracer.start_span(
            BATCH_SPAN,
            context=Context(),
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": records[0].origin.topic if records else "",
                "messaging.destination.partition.id": str(partition),
                "messaging.batch.message_count": len(records),
            },
        )
        self._started_ns = time.time_ns()
        self._open: list[Span] = []
        self._links: list[Link] = []
        self._token: Any = None
        self._failed: str | None = None
        self._published = True
        self._attributes: list[dict[str, str | int | bool]] = [{} for _ in records]
        # Per record: what its span will be made with (None: the sampler leaves it out).
        self._planned: list[tuple[Any, int, int] | None] = []
        self.contexts = []
        should_sample = traced.sampler.should_sample
        root = Context()
        consumer = SpanKind.CONSUMER
        for record in records:
            parent = incoming(record.headers)
            context = root if parent is None else _remote(parent)
            trace_id = random.getrandbits(128) or 1 if parent is None else int(parent.trace_id, 16)
            span_id = random.getrandbits(64) or 1
            decision = should_sample(context, trace_id, REQUEST_SPAN, consumer).decision
            sampled = decision is sample
            self._planned.append((context, trace_id, span_id) if sampled else None)
            self.contexts.append(
                TraceContext(
                    f"{trace_id:032x}",
                    f"{span_id:016x}",
                    "01" if sampled else "00",
                    None if parent is None else parent.tracestate,
                )
            )

    def __enter__(self) -> _SpanBatch:
        self._token = _CURRENT.set(self)
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        _CURRENT.reset(self._token)
        failed = None
        if error is not None:
            failed = Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:200])
            self._root.set_status(failed)
        ended_ns = time.time_ns()
        consumer = SpanKind.CONSUMER
        for planned, attributes in zip(self._planned, self._attributes, strict=True):
            if planned is None:
                continue
            context, trace_id, span_id = planned
            if not self._published:
                attributes["migrator.published"] = False
            self._ids.next = (trace_id, span_id)
            span = self._tracer.start_span(
                REQUEST_SPAN,
                context=context,
                kind=consumer,
                attributes=attributes,
                links=self._links,
                start_time=self._started_ns,
            )
            self._ids.next = None  # taken by now; never left for another span to take
            if failed is not None:
                span.set_status(failed)
            span.end(end_time=ended_ns)
        self._root.end(end_time=ended_ns)

    @contextmanager
    def stage(self, name: str, attributes: Mapping[str, str | int] | None = None) -> Iterator[None]:
        from opentelemetry.trace import Link, Status, StatusCode, set_span_in_context

        parent = self._open[-1] if self._open else self._root
        span = self._tracer.start_span(
            name, context=set_span_in_context(parent), attributes=attributes
        )
        # One link object, shared by every request span of the batch.
        self._links.append(Link(span.get_span_context()))
        self._open.append(span)
        try:
            yield
        except BaseException as error:
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:200]))
            raise
        finally:
            self._open.pop()
            span.end()

    def answered(self, answers: Sequence[tuple[Consumed, Answer]]) -> None:
        for attributes, (record, answer) in zip(self._attributes, answers, strict=True):
            # The partition is the batch span's (every link leads there); each attribute costs
            # about 4 µs a request, made and encoded.
            attributes["messaging.kafka.offset"] = record.origin.offset
            if isinstance(answer, Rejection):
                attributes["migrator.answer"] = "dead_letter"
                attributes["migrator.error_code"] = answer.reason
                continue
            outcome = answer[0]
            attributes["migrator.request_id"] = str(outcome.request_id)
            attributes["migrator.answer"] = outcome.outcome
            if outcome.error is not None:
                attributes["migrator.error_code"] = outcome.error.code.value

    def unpublished(self) -> None:
        self._published = False


def _remote(parent: TraceContext) -> Any:
    """An OpenTelemetry context whose current span is the record's remote parent."""
    from opentelemetry.trace import (
        NonRecordingSpan,
        SpanContext,
        TraceFlags,
        TraceState,
        set_span_in_context,
    )

    state = TraceState.from_header([parent.tracestate]) if parent.tracestate else None
    remote = SpanContext(
        int(parent.trace_id, 16),
        int(parent.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(parent.flags, 16)),
        trace_state=state,
    )
    return set_span_in_context(NonRecordingSpan(remote))


class _PlannedIds:
    """The SDK's id generator for request spans whose ids were chosen before they were made
    (their answers carry them): ``next`` is taken by the next span made; random ids otherwise,
    as the SDK's own generator makes them."""

    def __init__(self) -> None:
        self.next: tuple[int, int] | None = None

    def generate_trace_id(self) -> int:
        return self.next[0] if self.next is not None else random.getrandbits(128) or 1

    def generate_span_id(self) -> int:
        if self.next is not None:
            span_id, self.next = self.next[1], None
            return span_id
        return random.getrandbits(64) or 1

    def is_trace_id_random(self) -> bool:
        return True


class Traced:
    """Tracing on: the SDK's tracer provider, owned here (not installed globally)."""

    def __init__(self, provider: TracerProvider, ids: _PlannedIds) -> None:
        self.provider = provider
        self.ids = ids
        self.sampler = provider.sampler
        self.tracer = provider.get_tracer("onboarding-migrator")

    def batch(self, records: Sequence[Consumed], partition: int) -> BatchTrace:
        return _SpanBatch(self, records, partition)

    def stage(self, name: str) -> AbstractContextManager[None]:
        current = _CURRENT.get()
        return _NO_SPAN if current is None else current.stage(name)

    def shutdown(self) -> None:
        self.provider.shutdown()


def new_tracing(settings: Settings, *, processor: SpanProcessor | None = None) -> WorkerTracing:
    """The tracing ``settings.tracing`` asks for. ``processor``: where the spans go instead of
    the configured exporter (tests hand an in-memory exporter's)."""
    if settings.tracing == "off" and processor is None:
        return Untraced()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        # OTEL_SERVICE_NAME unset: the service's own name rather than the SDK's placeholder.
        resource = resource.merge(Resource({"service.name": "onboarding-migrator"}))
    ids = _PlannedIds()
    provider = TracerProvider(
        resource=resource,
        shutdown_on_exit=False,
        id_generator=ids,  # type: ignore[arg-type]  # an IdGenerator by its methods
    )
    if processor is None:
        if settings.tracing == "console":
            processor = BatchSpanProcessor(ConsoleSpanExporter())
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processor = BatchSpanProcessor(OTLPSpanExporter())
    provider.add_span_processor(processor)
    log.info("tracing on: %s exporter", settings.tracing)
    return Traced(provider, ids)


__all__ = [
    "BATCH_SPAN",
    "KAFKA_SPAN",
    "POSTGRES_SPAN",
    "REDIS_SPAN",
    "REQUEST_SPAN",
    "BatchTrace",
    "Traced",
    "Untraced",
    "WorkerTracing",
    "new_tracing",
]
