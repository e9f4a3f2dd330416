"""The worker's tracing when it is on: a batch's spans as plain values, the SDK for its sampler,
its resource and its exporters (``streams.tracing`` decides, and imports this module only then,
so that tracing off loads no OpenTelemetry module).

See ``streams.tracing`` for the spans and why they are linked as they are, and
``streams.span_export`` for why the spans skip the SDK.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TraceState,
    set_span_in_context,
)

from schemas.events import Rejection
from streams.codecs import Answer, Consumed
from streams.otlp_transport import new_span_exporter
from streams.settings import Settings
from streams.span_export import (
    BatchSpans,
    ExportLimits,
    OtlpHttpSender,
    RequestSpan,
    Sender,
    SpanEncoder,
    SpanExport,
    StageSpan,
    private_post,
)
from streams.trace_context import TraceContext, incoming, new_traces
from streams.tracing import BATCH_SPAN, REQUEST_SPAN, SCOPE, BatchTrace

log = logging.getLogger(__name__)

_NO_SPAN: AbstractContextManager[None] = nullcontext()

# The batch the running task is applying: the applier's stages find their batch here (the
# lanes run one batch per task at a time; each asyncio task has its own context).
_CURRENT: ContextVar[_SpanBatch | None] = ContextVar("migrator_batch_trace", default=None)


class _SpanBatch:
    """A batch when tracing is on: a span per request, a batch span, a span per stage, all as
    plain values (``span_export``), handed over together once the batch is over (``Traced.out``:
    encoded straight to OTLP, or made through the SDK).

    A request span's ids are chosen when the batch begins, since its answer carries them
    (``contexts``); a request the sampler leaves out gets no span at all. The batch's own spans
    are a trace of their own, sampled as one: when the sampler leaves it out, the request spans
    still link to its stages (by ids no exporter will see, as the SDK would have made them).
    """

    def __init__(self, traced: Traced, records: Sequence[Consumed], partition: int) -> None:
        sample = Decision.RECORD_AND_SAMPLE
        should_sample = traced.sampler.should_sample
        self._out = traced.out
        self._started_ns = time.time_ns()
        # What every request of the batch shares is said once, on the batch span.
        attributes: dict[str, str | int] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": records[0].origin.topic if records else "",
            "messaging.destination.partition.id": str(partition),
            "messaging.batch.message_count": len(records),
        }
        self._trace_id = random.getrandbits(128) or 1
        decision = should_sample(
            Context(), self._trace_id, BATCH_SPAN, SpanKind.INTERNAL, attributes
        )
        self._flags = 1 if decision.decision is sample else 0
        root_id = random.getrandbits(64) or 1
        self._root = StageSpan(BATCH_SPAN, root_id, 0, self._started_ns, attributes=attributes)
        self._own: list[StageSpan] = [self._root]
        self._open: list[StageSpan] = []
        self._links: list[tuple[int, int, int]] = []
        self._token: Any = None
        self._published = True
        self._requests: list[RequestSpan] = []  # one per record, in the records' order
        self._spans: list[RequestSpan] = []  # of the requests the sampler keeps
        self.contexts = []
        parent_context = traced.parent_context
        by_parent = traced.decisions.by_parent
        root = Context()
        consumer = SpanKind.CONSUMER
        # A new trace per record, used whole for a record without one, and for its span id
        # by a record that continues its own.
        for record, new in zip(records, new_traces(len(records)), strict=True):
            parent = incoming(record.headers)
            trace_id = new.trace_id if parent is None else parent.trace_id
            sampled = by_parent.get(None if parent is None else parent.flags)
            if sampled is None:
                context = root if parent is None else parent_context(parent)
                decision = should_sample(context, int(trace_id, 16), REQUEST_SPAN, consumer)
                sampled = decision.decision is sample
            span = RequestSpan(trace_id, new.span_id, parent)
            self._requests.append(span)
            if sampled:
                self._spans.append(span)
            if parent is None and sampled:
                self.contexts.append(new)
            else:
                self.contexts.append(
                    TraceContext(
                        trace_id,
                        new.span_id,
                        "01" if sampled else "00",
                        None if parent is None else parent.tracestate,
                    )
                )

    def __enter__(self) -> _SpanBatch:
        self._token = _CURRENT.set(self)
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        _CURRENT.reset(self._token)
        failed = None
        if error is not None:
            failed = self._root.error = f"{type(error).__name__}: {error}"[:200]
        ended_ns = self._root.end_ns = time.time_ns()
        if not self._published:
            for span in self._spans:
                span.published = False
        own = self._own if self._flags else ()
        if self._spans or own:
            links = tuple(self._links)
            self._out(
                BatchSpans(
                    self._started_ns, ended_ns, links, failed, self._spans, self._trace_id, own
                )
            )

    @contextmanager
    def stage(self, name: str, attributes: Mapping[str, str | int] | None = None) -> Iterator[None]:
        parent = self._open[-1] if self._open else self._root
        span_id = random.getrandbits(64) or 1
        span = StageSpan(name, span_id, parent.span_id, time.time_ns(), attributes=attributes)
        self._own.append(span)
        self._links.append((self._trace_id, span.span_id, self._flags))
        self._open.append(span)
        try:
            yield
        except BaseException as error:
            span.error = f"{type(error).__name__}: {error}"[:200]
            raise
        finally:
            self._open.pop()
            span.end_ns = time.time_ns()

    def answered(self, answers: Sequence[tuple[Consumed, Answer]]) -> None:
        for span, (record, answer) in zip(self._requests, answers, strict=True):
            # The partition is the batch span's (every link leads there).
            span.offset = record.origin.offset
            if isinstance(answer, Rejection):
                span.answer = "dead_letter"
                span.error_code = answer.reason.value
                continue
            outcome = answer[0]
            span.request_id = outcome.request_id
            span.answer = outcome.outcome
            if outcome.error is not None:
                span.error_code = outcome.error.code.value

    def unpublished(self) -> None:
        self._published = False


def _remote(parent: TraceContext) -> Context:
    """An OpenTelemetry context whose current span is the record's remote parent."""
    state = TraceState.from_header([parent.tracestate]) if parent.tracestate else None
    remote = SpanContext(
        int(parent.trace_id, 16),
        int(parent.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(parent.flags, 16)),
        trace_state=state,
    )
    return set_span_in_context(NonRecordingSpan(remote))


class _ParentContexts:
    """The context a sampler is given for a record's remote parent.

    The SDK's own samplers (every one ``OTEL_TRACES_SAMPLER`` names, but for plugins) decide by
    the parent's flags and remoteness and by the trace id, never by the parent's span id: for
    them one context per flags value stands for every parent, which saves making one per record
    (about 1.2 µs a record, measured when tracing added about 6 before encoding). Any
    other sampler is given each record's own parent.
    """

    def __init__(self, sampler: Sampler) -> None:
        self._shared = type(sampler).__module__ == sampling.__name__
        self._by_flags: dict[str, Context] = {}

    def of(self, parent: TraceContext) -> Context:
        if not self._shared:
            return _remote(parent)
        context = self._by_flags.get(parent.flags)
        if context is None:
            context = self._by_flags[parent.flags] = _remote(
                TraceContext(parent.trace_id, parent.span_id, parent.flags)
            )
        return context


# The SDK's samplers whose decision for a request span depends on its parent's flags alone (or on
# nothing): never on the trace id, the span's name, kind or attributes, or the parent's ids.
_BY_FLAGS_ALONE = tuple(
    sampler.get_description()
    for sampler in (
        sampling.ALWAYS_ON,
        sampling.ALWAYS_OFF,
        sampling.ParentBased(sampling.ALWAYS_ON),
        sampling.ParentBased(sampling.ALWAYS_OFF),
    )
)


class _Decisions:
    """Whether a request span is sampled, decided once per kind of parent when the sampler allows.

    The default sampler (``parentbased_always_on``) and the other three named in
    ``_BY_FLAGS_ALONE`` decide by whether there is a parent and by its sampled flag, nothing
    else; for them ``by_parent`` holds the decision for no parent (key None) and for each flags
    value, asked of the sampler itself, so a record costs a lookup instead of a sampler call
    (1.3-1.6 µs a record, measured when tracing added 7-8). Any other sampler (a ratio,
    a plugin) is asked for every record: ``by_parent`` is empty.
    """

    def __init__(self, sampler: Sampler) -> None:
        self.by_parent: dict[str | None, bool] = {}
        if type(sampler).__module__ != sampling.__name__:
            return
        if sampler.get_description() not in _BY_FLAGS_ALONE:
            return
        sample = Decision.RECORD_AND_SAMPLE
        kind = SpanKind.CONSUMER
        self.by_parent[None] = (
            sampler.should_sample(Context(), 1, REQUEST_SPAN, kind).decision is sample
        )
        for flags in (f"{value:02x}" for value in range(256)):
            remote = _remote(TraceContext("0" * 31 + "1", "0" * 15 + "1", flags))
            decision = sampler.should_sample(remote, 1, REQUEST_SPAN, kind).decision
            self.by_parent[flags] = decision is sample


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


class _SdkSpans:
    """A batch's spans made through the SDK after the fact, with the ids, times and parents
    they were given: for the console exporter (a debugging aid, where the SDK's cost does not
    matter), and in case the OTLP exporter lacks the route for bytes encoded here
    (``span_export.private_post``)."""

    def __init__(self, tracer: Tracer, ids: _PlannedIds) -> None:
        self._tracer = tracer
        self._ids = ids

    def __call__(self, batch: BatchSpans) -> None:
        links = [Link(SpanContext(t, s, False, TraceFlags(f))) for t, s, f in batch.links]
        failed = None if batch.error is None else Status(StatusCode.ERROR, batch.error)
        for request in batch.spans:
            span = self._start(
                int(request.trace_id, 16),
                int(request.span_id, 16),
                REQUEST_SPAN,
                context=None if request.parent is None else _remote(request.parent),
                kind=SpanKind.CONSUMER,
                attributes=request.attributes,
                links=links,
                start_time=batch.start_ns,
            )
            if failed is not None:
                span.set_status(failed)
            span.end(end_time=batch.end_ns)
        for own in batch.own:
            parent = None
            if own.parent_span_id:
                flags = TraceFlags(TraceFlags.SAMPLED)
                parent_span = SpanContext(batch.trace_id, own.parent_span_id, False, flags)
                parent = set_span_in_context(NonRecordingSpan(parent_span))
            span = self._start(
                batch.trace_id,
                own.span_id,
                own.name,
                context=parent or Context(),
                attributes=own.attributes,
                start_time=own.start_ns,
            )
            if own.error is not None:
                span.set_status(Status(StatusCode.ERROR, own.error))
            span.end(end_time=own.end_ns)

    def _start(self, trace_id: int, span_id: int, name: str, **options: Any) -> Span:
        self._ids.next = (trace_id, span_id)
        try:
            return self._tracer.start_span(name, **options)
        finally:
            self._ids.next = None  # taken by now; never left for another span to take


class Traced:
    """Tracing on: the SDK's tracer provider, owned here (not installed globally), for its
    sampler and exporters, and where a batch's spans go."""

    def __init__(
        self,
        provider: TracerProvider,
        out: Callable[[BatchSpans], None] | None = None,
        close: Callable[[], None] | None = None,
    ) -> None:
        self.provider = provider
        self.sampler = provider.sampler
        self.parent_context = _ParentContexts(self.sampler).of
        self.decisions = _Decisions(self.sampler)
        ids = provider.id_generator
        assert isinstance(ids, _PlannedIds)
        self.out = out or _SdkSpans(provider.get_tracer(SCOPE), ids)
        self._close = close

    def batch(self, records: Sequence[Consumed], partition: int) -> BatchTrace:
        return _SpanBatch(self, records, partition)

    def stage(self, name: str) -> AbstractContextManager[None]:
        current = _CURRENT.get()
        return _NO_SPAN if current is None else current.stage(name)

    def shutdown(self) -> None:
        if self._close is not None:
            self._close()
        self.provider.shutdown()


def _otlp_sender(provider: TracerProvider) -> Sender | None:
    """The OTLP/HTTP exporter's client for bytes encoded here; or, if this exporter version has
    no such route, None and the SDK's batch span processor on ``provider`` for every span."""
    exporter = new_span_exporter()
    post = private_post(exporter)
    if post is None:
        log.warning(
            "tracing: the OTLP exporter has no client.export(bytes); spans go through the SDK "
            "(about 50 µs a span instead of about 7)"
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return None
    return OtlpHttpSender(exporter, post)


def _warn_if_batches_overflow(settings: Settings, max_queue_size: int) -> None:
    if settings.batch_size > max_queue_size:
        log.warning(
            "tracing: MIGRATOR_BATCH_SIZE=%d exceeds OTEL_BSP_MAX_QUEUE_SIZE=%d: a full batch's "
            "request spans cannot all be queued, some will be dropped",
            settings.batch_size,
            max_queue_size,
        )


def new_traced(settings: Settings, sender: Sender | None) -> Traced:
    """Tracing on, as ``settings.tracing`` asks; ``sender``: see ``tracing.new_tracing``."""
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        # OTEL_SERVICE_NAME unset: the service's own name rather than the SDK's placeholder.
        resource = resource.merge(Resource({"service.name": "onboarding-migrator"}))
    provider = TracerProvider(
        resource=resource,
        shutdown_on_exit=False,
        id_generator=_PlannedIds(),  # type: ignore[arg-type]  # an IdGenerator by its methods
    )
    log.info("tracing on: %s exporter", settings.tracing)
    limits = ExportLimits.from_env()
    _warn_if_batches_overflow(settings, limits.max_queue_size)
    if sender is None and settings.tracing == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        return Traced(provider)
    if sender is None:
        sender = _otlp_sender(provider)
        if sender is None:
            return Traced(provider)
    export = SpanExport(sender, SpanEncoder(resource, SCOPE, REQUEST_SPAN), limits)
    return Traced(provider, export.put, export.shutdown)
