"""A database row as the pure modules see it: anything indexable by column name."""

from __future__ import annotations

from typing import Any, Protocol


class Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


class JsonText(bytes):
    """JSON encoded already (UTF-8): written as it is, not encoded again, to a jsonb column
    (the audit detail) or as the bytes of a bytea one (the ledger and the answer records).

    An outcome goes to PostgreSQL up to three times (ledger, audit, answer record); encoding it
    once and handing the same bytes to each saves the worker that work per user.
    """
