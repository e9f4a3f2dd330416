"""The worker's tracing, chosen once: spans over OTLP when the ``OTEL_*`` variables ask, or none.

``new_tracing(settings)`` is the one place that decides (``Settings.tracing``, read from the
standard variables by ``streams.settings``). Downstream, the agent asks the object it returns
for a ``BatchTrace`` per batch and never tests the mode again:

- ``Untraced`` (the default): no OpenTelemetry SDK is even imported, no span is made. Each
  answer still carries its request's trace (``streams.trace_context``): the request's own
  ``traceparent`` passed through as it came, or a new trace when it had none or an invalid one.
- ``Traced`` (``streams.traced``, imported only then): an SDK tracer provider for its
  sampler, service name and resource (from the ``OTEL_*`` variables, read where the SDK reads
  them). The spans themselves skip the SDK: a batch's spans are kept as plain values and
  encoded straight to OTLP (``streams.span_export``), exported by one queue and one thread
  through the OTLP/HTTP exporter's client. The console exporter (for a look without a
  collector) makes them through the SDK once the batch is over.

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

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol

from agents.batch_transaction import POSTGRES_STAGE, REDIS_STAGE
from streams.codecs import Answer, Consumed
from streams.settings import Settings
from streams.trace_context import TraceContext, continued_or_new

if TYPE_CHECKING:
    from streams.span_export import Sender

# The names of the spans, for the README and the tests (the batch applier names its own two).
REQUEST_SPAN = "process user-migration-requested"
BATCH_SPAN = "migrate batch"
POSTGRES_SPAN = POSTGRES_STAGE
REDIS_SPAN = REDIS_STAGE
KAFKA_SPAN = "kafka transaction"
# The instrumentation scope of every span the worker makes.
SCOPE = "onboarding-migrator"

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
        self.contexts = continued_or_new([record.headers for record in records])

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


def new_tracing(settings: Settings, *, sender: Sender | None = None) -> WorkerTracing:
    """The tracing ``settings.tracing`` asks for. ``sender``: where the encoded spans go instead
    of the OTLP exporter's HTTP client (tests keep them)."""
    if settings.tracing == "off" and sender is None:
        return Untraced()
    from streams.traced import new_traced  # the SDK, loaded only now

    return new_traced(settings, sender)


__all__ = [
    "BATCH_SPAN",
    "KAFKA_SPAN",
    "POSTGRES_SPAN",
    "REDIS_SPAN",
    "REQUEST_SPAN",
    "BatchTrace",
    "Untraced",
    "WorkerTracing",
    "new_tracing",
]
