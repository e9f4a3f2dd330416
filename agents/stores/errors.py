"""The stores' own errors: what callers of ``agents.stores`` catch, whatever client sits below.

The PostgreSQL and Redis adapters translate their client's exceptions into these once, at the
boundary (as httpx maps httpcore's), so the batch applier, the jobs and the in-memory fakes never
name ``asyncpg`` or ``redis``. The client's exception stays reachable as ``__cause__``.
"""

from __future__ import annotations


class StoreError(Exception):
    """A store refused or could not answer; the message names the client's error."""


class StoreUnavailable(StoreError):
    """PostgreSQL is not answering right now (refused, cut, timed out, shutting down) or failed
    in a way that passes (a deadlock, a serialization failure, a cancelled statement): the same
    work can be tried again."""


class AnsweredElsewhere(StoreError):
    """A unique violation: another transaction wrote the same record first (another worker
    answered it concurrently); a redo sees that answer."""


class StatementRefused(StoreError):
    """PostgreSQL answered and refused a statement for another reason (bad data, a check)."""


class MirrorUnavailable(StoreError):
    """Redis refused a write, whatever the reason (down, loading, read-only, out of memory)."""


def describe(exc: BaseException) -> str:
    """``Type: message`` of a client's exception, for a readable store error."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


__all__ = [
    "AnsweredElsewhere",
    "MirrorUnavailable",
    "StatementRefused",
    "StoreError",
    "StoreUnavailable",
    "describe",
]
