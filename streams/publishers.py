"""The delivery guarantee, as one object chosen once: how a batch's answers reach Kafka.

``new_publisher`` is the one place that reads ``MIGRATOR_PROCESSING_GUARANTEE``. Everything
downstream (the agent, its lanes, the views, the app's rebalance hooks) holds a
``BatchPublisher`` and asks it; none of them tests the mode again.

- ``TransactionalPublisher`` (exactly-once): a batch's answers and its partition's next offset
  commit in one Kafka transaction (``streams.exactly_once``); a batch claims only the records
  still this worker's to answer, with no hole before them.
- ``PlainPublisher`` (at-least-once): plain sends, awaited before the records are acknowledged
  (Faust then commits their offsets); a redelivered record is answered again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import faust
from aiokafka import AIOKafkaProducer
from faust.types import TP
from mode import Service

from streams import topics
from streams.codecs import Send
from streams.exactly_once import PartitionTransactions
from streams.faust_internals import exclude_from_faust_commits, seek_to_committed, seeker
from streams.group_offsets import GroupOffsets
from streams.partition_reader import PartitionReader
from streams.settings import Settings


class _HasOffset(Protocol):
    @property
    def offset(self) -> int: ...


# A Faust message (in tests, anything with an ``offset``).
Message = TypeVar("Message", bound=_HasOffset)


class BatchPublisher(Protocol):
    """What the agent, the views and the app's rebalance hooks need of the delivery guarantee."""

    # Whether a record may be acknowledged without an answer: under exactly-once nothing is
    # committed without one, so a record left unanswered is answered by the partition's next
    # owner; under at-least-once an acknowledgement commits it, so every record is answered.
    leaves_unanswered: bool

    def epoch(self) -> int:
        """Changes when a rebalance begins: a batch begun before it publishes nothing."""
        ...

    def revoking(self) -> bool:
        """A rebalance is taking partitions away: held records must reach the lanes (they
        publish nothing) so that the rebalance is not kept waiting for them."""
        ...

    async def claim(self, partition: int, messages: Sequence[Message], epoch: int) -> list[Message]:
        """The records of one partition's batch this worker is to answer now, in offset order."""
        ...

    async def publish(
        self, partition: int, epoch: int, records: Sequence[Send], last_offset: int
    ) -> bool:
        """Publish a batch's records; True once they are on the topics."""
        ...

    def next_offset(self, partition: int) -> int | None:
        """The partition's first offset not answered yet, where the guarantee tracks it."""
        ...

    async def settle(self) -> None:
        """Commit owned partitions past trailing offsets that hold no record (an upstream
        transaction's commit marker), where the guarantee commits offsets itself."""
        ...

    async def on_revoking(self) -> None: ...

    async def on_assigned(self, assigned: set[TP]) -> None: ...

    async def stop(self) -> None: ...


class TransactionalPublisher:
    """Exactly-once: one Kafka transaction per batch of one request partition."""

    leaves_unanswered = True

    def __init__(self, app: faust.App, transactions: PartitionTransactions) -> None:
        self._app = app
        self.transactions = transactions

    def epoch(self) -> int:
        return self.transactions.epoch

    def revoking(self) -> bool:
        return not self.transactions.positions.ready

    async def claim(self, partition: int, messages: Sequence[Message], epoch: int) -> list[Message]:
        """None if the partition is no longer ours; not those already covered by a committed
        transaction (stale copies from before a seek); none at or after a record that never
        arrived, before the batch or inside it (the partition is read again from the first
        missing one; see ``PartitionTransactions.claim``)."""
        transactions = self.transactions
        if not transactions.positions.owns(partition, epoch):
            return []
        # In offset order, each offset once: after a seek, copies read before it may still be
        # buffered next to the records read again.
        by_offset = {message.offset: message for message in messages}
        seek = seeker(self._app, transactions.source_topic, partition)
        wanted = await transactions.claim(partition, list(by_offset), seek)
        return [by_offset[offset] for offset in wanted]

    async def publish(
        self, partition: int, epoch: int, records: Sequence[Send], last_offset: int
    ) -> bool:
        return await self.transactions.publish(partition, epoch, records, last_offset)

    def next_offset(self, partition: int) -> int | None:
        return self.transactions.positions.next.get(partition)

    async def settle(self) -> None:
        await self.transactions.settle()

    async def on_revoking(self) -> None:
        await self.transactions.on_revocation_start()

    async def on_assigned(self, assigned: set[TP]) -> None:
        source = self.transactions.source_topic
        mine = {tp.partition for tp in assigned if tp.topic == source}
        await self.transactions.on_assigned(mine, lambda: seek_to_committed(self._app, source))

    async def stop(self) -> None:
        await self.transactions.stop()


class PlainPublisher:
    """At-least-once: the app's producer sends, awaited before the records are acknowledged."""

    leaves_unanswered = False

    def __init__(self, app: faust.App) -> None:
        self._app = app

    def epoch(self) -> int:
        return 0

    def revoking(self) -> bool:
        return bool(self._app.rebalancing)

    async def claim(self, partition: int, messages: Sequence[Message], epoch: int) -> list[Message]:
        return list(messages)

    async def publish(
        self, partition: int, epoch: int, records: Sequence[Send], last_offset: int
    ) -> bool:
        producer = self._app.producer
        futures = [
            await producer.send(
                record.topic, record.key, record.value, partition, None, list(record.headers)
            )
            for record in records
        ]
        await asyncio.gather(*futures)
        return True

    def next_offset(self, partition: int) -> int | None:
        return None

    async def settle(self) -> None:
        """Faust commits the acknowledged offsets: a trailing commit marker upstream reads as
        a lag of 1 until the partition's next request (not settled in this mode)."""
        return None

    async def on_revoking(self) -> None:
        return None

    async def on_assigned(self, assigned: set[TP]) -> None:
        return None

    async def stop(self) -> None:
        return None


class Settler(Service):
    """Asks the publisher to settle its partitions' trailing offsets every ``every_s``: an
    idle worker's backlog reads 0 seconds after an upstream transaction, not 1 for good."""

    def __init__(self, publisher: BatchPublisher, every_s: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._publisher = publisher
        self._every_s = every_s

    @Service.task
    async def _settle(self) -> None:
        while not self.should_stop:
            await self.sleep(self._every_s)
            await self._publisher.settle()


def new_transactional_producer(settings: Settings, transactional_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        max_request_size=topics.MAX_DEAD_LETTER_BYTES + 64 * 1024,
        max_batch_size=topics.PRODUCE_BATCH_BYTES,
        request_timeout_ms=15_000,
    )


def new_publisher(settings: Settings, app: faust.App) -> BatchPublisher:
    """The publisher of ``settings.processing_guarantee``: the one place the mode is read."""
    if settings.processing_guarantee != "exactly_once":
        return PlainPublisher(app)
    # The request topic's offsets are committed inside the transactions, never by Faust.
    exclude_from_faust_commits(topics.REQUESTED)
    transactions = PartitionTransactions(
        source_topic=topics.REQUESTED,
        group_id=settings.app_id,
        app_id=settings.app_id,
        new_producer=lambda transactional_id: new_transactional_producer(
            settings, transactional_id
        ),
        probe=PartitionReader(settings.kafka_bootstrap_servers),
        group_offsets=GroupOffsets(settings.kafka_bootstrap_servers, settings.app_id),
    )
    return TransactionalPublisher(app, transactions)


__all__ = [
    "BatchPublisher",
    "PlainPublisher",
    "Settler",
    "TransactionalPublisher",
    "new_publisher",
    "new_transactional_producer",
]
