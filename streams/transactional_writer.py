"""How a worker writes what an operator asked for (the admin API's requests, control records):
all of a call's records in one Kafka transaction, with an answer within ``WRITE_TIMEOUT_S``.

A plain producer waits for as long as Kafka is away and sends what it buffered once Kafka is
back (aiokafka expires a batch only when its partition has no known leader, and a killed
broker stays the known leader): a call answered after 33 s, and calls whose clients had given
up were published later, so a client that retried doubled the work. Here a call either commits
its transaction or raises ``KafkaUnavailable`` naming Kafka; a transaction that did not commit
is never read by a ``read_committed`` consumer (the worker and the control watcher are), whether
it was aborted or left open (Kafka aborts it when the next producer with the same transactional
id starts, or at its timeout). A producer that failed is abandoned, its unsent records dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from mode import Service

from streams.connections import start_kafka_client
from streams.faust_internals import abandon_producer
from streams.settings import Settings

log = logging.getLogger(__name__)

# The longest a write of the admin API waits for Kafka before it answers 503.
WRITE_TIMEOUT_S = 8.0
# A transaction left open by a call that timed out is aborted by Kafka after this long at most.
_TRANSACTION_TIMEOUT_MS = 30_000


class KafkaUnavailable(Exception):
    """Kafka did not take the write in time: nothing of it will be read."""


Record = tuple[bytes | None, bytes]  # key, value of one record
Headers = Sequence[tuple[str, bytes]]


async def _nothing() -> None:
    return None


class TransactionalWriter(Service):
    """One transactional producer per worker and ``role`` (``admin``, ``control``), writing to
    ``topic``; started on first use and replaced after any failure (its successor fences it and
    settles what it left open); stopped with the worker."""

    def __init__(self, settings: Settings, *, topic: str, role: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._topic = topic
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self.transactional_id = f"{settings.app_id}-{role}-{socket.gethostname()}-{os.getpid()}"

    async def write(
        self,
        records: Sequence[Record],
        *,
        before_commit: Callable[[], Awaitable[None]] = _nothing,
        headers: Sequence[Headers] | None = None,
    ) -> None:
        """Publish ``records``, all or none; ``before_commit`` runs once they are sent and
        before they become visible (a run's bookkeeping). ``headers``: each record's Kafka
        headers, in the same order (none if not given). Raises ``KafkaUnavailable`` within
        ``WRITE_TIMEOUT_S`` when Kafka does not take them."""
        async with self._lock:
            try:
                await asyncio.wait_for(
                    self._transaction(records, before_commit, headers), timeout=WRITE_TIMEOUT_S
                )
            except (KafkaError, OSError, TimeoutError) as exc:
                await self._drop()
                # The exception's name, not its text: aiokafka's is a repr of socket addresses.
                raise KafkaUnavailable(
                    f"Kafka did not take the records within {WRITE_TIMEOUT_S:g} s "
                    f"({type(exc).__name__}); nothing was written"
                ) from exc
            except BaseException:
                # ``before_commit`` failed (PostgreSQL) or the call was cancelled: the
                # transaction did not commit, and a producer left in it would refuse the next
                # one. Its successor aborts it.
                await self._drop()
                raise

    async def _transaction(
        self,
        records: Sequence[Record],
        before_commit: Callable[[], Awaitable[None]],
        headers: Sequence[Headers] | None,
    ) -> None:
        producer = await self._ready_producer()
        await producer.begin_transaction()
        each = headers if headers is not None else [()] * len(records)
        futures = [
            await producer.send(self._topic, value, key=key, headers=list(extra) or None)
            for (key, value), extra in zip(records, each, strict=True)
        ]
        await asyncio.gather(*futures)
        await before_commit()
        await producer.commit_transaction()

    async def _ready_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._settings.kafka_bootstrap_servers,
                transactional_id=self.transactional_id,
                enable_idempotence=True,
                acks="all",
                transaction_timeout_ms=_TRANSACTION_TIMEOUT_MS,
                request_timeout_ms=int(WRITE_TIMEOUT_S * 1000),
            )
            await start_kafka_client(producer)  # closes the producer if it cannot start
            self._producer = producer
        return self._producer

    async def _drop(self) -> None:
        """Abandon the producer after a failure: what it has not sent is dropped, its
        transaction is not committed, and the next producer with this transactional id aborts
        it. (A plain stop would wait to deliver what it holds: for as long as Kafka is away.)"""
        producer, self._producer = self._producer, None
        if producer is not None:
            await abandon_producer(producer)

    async def on_stop(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
            if producer is None:
                return
            try:
                await asyncio.wait_for(producer.stop(), timeout=2)
            except Exception as exc:  # noqa: BLE001 - Kafka away: abandoned instead
                log.info("%s producer stop: %r", self.transactional_id, exc)
                await abandon_producer(producer)
