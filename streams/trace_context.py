"""W3C trace context in Kafka headers: parse, make and replace ``traceparent``/``tracestate``.

Pure functions over plain values (no OpenTelemetry, no I/O), so that the worker carries a
request's trace onto its answer at the cost of one header parse whether tracing is on or off,
and so that the rules (one ``traceparent`` per answer, never two; an invalid one ignored, never
a failure) are tested without servers. ``streams.tracing`` builds spans on top when asked.

The format is W3C Trace Context level 1: ``traceparent`` is
``{version:2}-{trace-id:32}-{parent-id:16}-{flags:2}`` in lowercase hex; a trace id or a parent id
of zeros is invalid; a version above ``00`` (not ``ff``) is read by its first four fields and
answered as ``00``. ``tracestate`` is carried as it came, only beside a valid ``traceparent``.
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from collections.abc import Sequence
from typing import NamedTuple

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# W3C: a vendor must propagate at least 512 characters of tracestate; longer ones may be cut.
# Dropped whole here rather than cut, so a carried tracestate is always the one that came.
_MAX_TRACESTATE = 512
# version-traceid-parentid-flags, lowercase hex (W3C: uppercase is invalid).
_FIELDS = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# The sampled flag on the traces the service starts: "the caller may have recorded", so that a
# worker or a consumer that samples by its parent (OpenTelemetry's default) records them.
SAMPLED = "01"

Headers = list[tuple[str, bytes]]


class TraceContext(NamedTuple):
    """One hop of a trace: its id, the span the next hop is a child of, the flags, and the
    vendors' trace state if any.

    A named tuple rather than a frozen dataclass: the worker makes one or two per request record
    (the record's, and its answer's when tracing is on), and a tuple is made in half the time
    (about 0.3 µs against 0.65, whose ``__init__`` sets each field through ``object.__setattr__``).
    """

    trace_id: str
    span_id: str
    flags: str = SAMPLED
    tracestate: str | None = None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    @property
    def sampled(self) -> bool:
        return bool(int(self.flags, 16) & 1)

    def headers(self) -> Headers:
        """The Kafka headers that carry this context: ``traceparent``, then ``tracestate``."""
        headers = [(TRACEPARENT, self.traceparent.encode("ascii"))]
        if self.tracestate:
            headers.append((TRACESTATE, self.tracestate.encode("ascii")))
        return headers


def parse_traceparent(value: bytes | str | None) -> TraceContext | None:
    """The context a ``traceparent`` value names, or None if it is not a valid one."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    value = value.strip(" \t")
    fields = _FIELDS.match(value)
    if fields is None:
        return None
    version, trace_id, span_id, flags = fields.groups()
    if version == "ff" or (version == "00" and len(value) != 55):
        return None  # version 00 has exactly these four fields
    if len(value) > 55 and value[55] != "-":
        return None  # a later version may add fields, each after a dash
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, flags)


def incoming(headers: Sequence[tuple[str, bytes | str | None]] | None) -> TraceContext | None:
    """The trace a record (or an HTTP call) carries: its one valid ``traceparent`` (two are no
    trace: which one would be meant?) with its ``tracestate`` (several are joined, as in HTTP),
    or None."""
    if not headers:
        return None
    parent: bytes | str | None = None
    parents = 0
    states: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == TRACEPARENT:
            parent = value
            parents += 1
        elif lowered == TRACESTATE and value:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            states.append(text.strip())
    if parents != 1:
        return None
    context = parse_traceparent(parent)
    if context is None or not states:
        return context
    state = ",".join(s for s in states if s)
    if state and len(state) <= _MAX_TRACESTATE and state.isascii() and state.isprintable():
        return TraceContext(context.trace_id, context.span_id, context.flags, state)
    return context


def new_trace() -> TraceContext:
    """A new trace (random ids, as OpenTelemetry's own generator makes them), sampled."""
    trace_id = random.getrandbits(128) or 1
    span_id = random.getrandbits(64) or 1
    return TraceContext(f"{trace_id:032x}", f"{span_id:016x}")


def new_traces(count: int) -> list[TraceContext]:
    """``count`` new traces, as ``new_trace`` makes them, from one draw of random bytes: a
    batch's worth for the cost of a few of ``new_trace``."""
    hexed = random.randbytes(24 * count).hex()
    traces = [
        TraceContext(hexed[i : i + 32], hexed[i + 32 : i + 48]) for i in range(0, 48 * count, 48)
    ]
    if _ZERO_SPAN in hexed:  # maybe an id of zeros, which is invalid (a span id: one in 2^64)
        traces = [
            trace if _ZERO_TRACE != trace.trace_id and _ZERO_SPAN != trace.span_id else new_trace()
            for trace in traces
        ]
    return traces


def planned_trace(plan_id: uuid.UUID, request_id: uuid.UUID) -> TraceContext:
    """The trace a planned request starts, fixed by its plan like its request id: the plan
    shows the trace ids that ``--execute`` (now, or later from the plan's file) publishes."""
    digest = hashlib.blake2b(plan_id.bytes + request_id.bytes, digest_size=24).digest()
    trace_id = digest[:16].hex()
    span_id = digest[16:].hex()
    return TraceContext(
        trace_id if trace_id != _ZERO_TRACE else "1".rjust(32, "0"),
        span_id if span_id != _ZERO_SPAN else "1".rjust(16, "0"),
    )


def continued_or_new(
    many: Sequence[Sequence[tuple[str, bytes | None]] | None],
) -> list[TraceContext]:
    """For each record's headers, its trace if it carries a valid one, else a new trace."""
    traces = [incoming(headers) for headers in many]
    fresh = iter(new_traces(traces.count(None)))
    return [trace or next(fresh) for trace in traces]


def is_trace_header(name: str) -> bool:
    lowered = name.lower()
    return lowered == TRACEPARENT or lowered == TRACESTATE


def without_trace_headers(
    headers: Sequence[tuple[str, bytes | None]],
) -> list[tuple[str, bytes | None]]:
    """``headers`` less any ``traceparent``/``tracestate`` (any case): an answer carries its
    own, and exactly one."""
    return [(name, value) for name, value in headers if not is_trace_header(name)]


__all__ = [
    "SAMPLED",
    "TRACEPARENT",
    "TRACESTATE",
    "TraceContext",
    "continued_or_new",
    "incoming",
    "is_trace_header",
    "new_trace",
    "new_traces",
    "parse_traceparent",
    "planned_trace",
    "without_trace_headers",
]
