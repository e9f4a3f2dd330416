"""A ``protocol.BatchStore`` on one connection whose outer transaction the caller rolls back:
the preflight's rollback rehearsal runs the real batch applier on real rows and keeps nothing.

Each try of a batch is a savepoint inside the caller's transaction (asyncpg nests
``conn.transaction()`` as a savepoint), so a refused statement rolls back that try only and the
applier halves the batch as it does in the worker; the caller's ``ROLLBACK`` at the end undoes
every try. Sequences (the audit log's ids) are the one thing a rollback does not rewind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agents.stores.postgres import Conn, ping, translate_errors
from agents.stores.postgres_batch import PostgresTransaction


class SandboxStore:
    """``BatchStore`` over ``conn``, which must be inside a transaction the caller rolls back."""

    def __init__(self, conn: Conn) -> None:
        if not conn.is_in_transaction():
            raise RuntimeError("the sandbox needs a connection inside a transaction")
        self.conn = conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        with translate_errors():
            async with self.conn.transaction():  # a savepoint
                yield PostgresTransaction(self.conn)

    async def ping(self) -> None:
        with translate_errors():
            await ping(self.conn)
