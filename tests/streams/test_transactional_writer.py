"""The transactional writer drops a producer whose transaction did not commit, whatever failed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.settings import Settings
from streams.transactional_writer import TransactionalWriter


class _Client:
    closed = False

    async def close(self) -> None:
        self.closed = True


class _Producer:
    """Stands in for a started transactional producer (the writer never starts this one)."""

    _sender = None
    _closed = False

    def __init__(self) -> None:
        self.client = _Client()
        self.committed = 0

    async def begin_transaction(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, key: Any = None, headers: Any = None) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def commit_transaction(self) -> None:
        self.committed += 1


async def test_a_failed_bookkeeping_leaves_no_producer_in_an_open_transaction() -> None:
    writer = TransactionalWriter(Settings.from_env({}), topic="t", role="test")
    producer = _Producer()
    writer._producer = producer  # type: ignore[assignment]

    async def refused() -> None:
        raise RuntimeError("PostgreSQL refused the run's count")

    with pytest.raises(RuntimeError):
        await writer.write([(b"k", b"v")], before_commit=refused)
    assert producer.committed == 0 and producer.client.closed
    assert writer._producer is None  # the next write starts a producer that fences this one
