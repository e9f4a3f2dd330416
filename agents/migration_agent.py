"""The Faust agent: thin wiring around the migration core and the per-partition transactions.

``migrate`` hands each record to its partition's lane. A lane takes the records waiting for it
in batches, decodes each at the edge (invalid → dead letter, original bytes kept), hands the
batch to the core (one PostgreSQL transaction that records every answer and advances the
counters), then publishes its outcomes and dead letters in one Kafka transaction with the
partition's offset. Lanes run side by side.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agents.core.decide import Rejected, Work
from schemas.events import MigrationRequest, Outcome, Rejection, decode_request
from streams import topics
from streams.codecs import Origin, dead_letter, failure_headers, origin_headers
from streams.exactly_once import Send

if TYPE_CHECKING:
    from streams.context import ServiceContext

log = logging.getLogger(__name__)


def register_agents(migrator: ServiceContext) -> dict[str, Any]:
    """Create the agents on ``migrator.app``; returns them by name (tests drive them directly)."""
    app = migrator.app

    @app.agent(migrator.requests, name="migrate")
    async def migrate(stream: Any) -> None:
        # Acks are ours: a record is acknowledged once its answer is published (or, under
        # exactly-once, once it is left to the partition's next owner; Faust does not commit
        # this topic then, the transactions do).
        manual = stream.noack()
        lanes = _Lanes(migrator, manual)
        try:
            await lanes.run(manual.events())
        finally:
            await lanes.close()

    return {"migrate": migrate}


class _Lanes:
    """One lane per request partition: each answers its partition's records in order, batch
    after batch, while the other lanes do the same.

    Why lanes: a batch spends most of its time waiting (PostgreSQL writing, a Kafka
    transaction committing). With one lane per partition, another partition's batch is decoded,
    decided and planned meanwhile, so PostgreSQL, Kafka and the worker work at the same time
    instead of taking turns. A user's requests share a partition (the key is the user id), so
    per-user order holds; partitions share nothing a batch locks but by accident (a user's
    requests keyed otherwise), which PostgreSQL settles like any lock wait.
    """

    def __init__(self, migrator: ServiceContext, stream: Any) -> None:
        self._migrator = migrator
        self._stream = stream
        self._size = migrator.settings.batch_size
        self._within = migrator.settings.batch_within_s
        self._queues: dict[int, asyncio.Queue[Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reader: asyncio.Future[None] | None = None

    async def _read(self, events: Any) -> None:
        """Hand each record to its partition's lane (a full lane holds the reader back)."""
        async for event in events:
            partition = event.message.partition
            queue = self._queues.get(partition)
            if queue is None:
                queue = self._queues[partition] = asyncio.Queue(maxsize=2 * self._size)
                self._tasks.append(asyncio.ensure_future(self._lane(queue)))
            await queue.put(event)

    async def run(self, events: Any) -> None:
        """Until the stream ends and every lane has answered what it holds; a lane's error or
        the reader's is raised here (the agent fails as it did with a single loop)."""
        self._reader = reader = asyncio.ensure_future(self._read(events))
        await asyncio.wait({reader, self._failed}, return_when=asyncio.FIRST_COMPLETED)
        if self._failed.done():
            self._failed.result()
        reader.result()
        await asyncio.gather(*self._tasks)
        if self._failed.done():
            self._failed.result()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._failed.done() and not self._failed.cancelled():
            self._failed.exception()  # retrieved: raised by ``run`` already, or moot on stop

    async def _lane(self, queue: asyncio.Queue[Any]) -> None:
        reader = self._reader
        assert reader is not None  # lanes are started by the reader
        pace = _Pace(self._within, self._size)
        control = self._migrator.control
        try:
            while events := await take_waiting(
                queue, reader, control.batch_limit(self._size), pace.linger
            ):
                if not await control.admit(len(events), revoking=self._migrator.revoking):
                    # Stopping while paused: under exactly-once nothing is committed without an
                    # answer, so the records are left to the partition's next owner; under
                    # at-least-once an ack would commit them unanswered, so they are answered.
                    if self._migrator.transactions is not None:
                        await _ack(self._stream, events)
                        continue
                try:
                    await process_events(self._migrator, events)
                except BaseException:
                    if self._migrator.transactions is not None:
                        await _ack(self._stream, events)
                    raise
                await _ack(self._stream, events)
                pace.done(len(events))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the agent, which re-raises it
            if not self._failed.done():
                self._failed.set_exception(exc)


# A steady trickle (records arriving while the previous, small batch was written) waits this
# long for company: every batch costs a PostgreSQL transaction and one Kafka transaction per
# partition, whose fixed cost would otherwise cap the rate of small batches below the load.
TRICKLE_LINGER_S = 0.05
# A record after this much quiet is alone: it is answered at once.
QUIET_S = 0.1


def linger_s(configured: float, *, previous_size: int, idle_s: float, most: int) -> float:
    """How long a batch waits for more records once none are waiting: pure, so unit-tested.

    ``configured`` (``MIGRATOR_BATCH_WITHIN_S``) wins when set. Otherwise: not at all after a
    quiet spell (one request is answered at once) or after a large batch (a backlog: batches
    already grow with it); briefly on a steady trickle of small batches.
    """
    if configured > 0:
        return configured
    if idle_s >= QUIET_S or previous_size >= most // 2:
        return 0.0
    return TRICKLE_LINGER_S


class _Pace:
    """The previous batch's size and end, for ``linger_s`` when the next batch begins."""

    def __init__(self, configured: float, most: int) -> None:
        self.configured = configured
        self.most = most
        self.size = 0
        self.ended = 0.0

    def done(self, size: int) -> None:
        self.size, self.ended = size, asyncio.get_running_loop().time()

    def linger(self) -> float:
        idle = asyncio.get_running_loop().time() - self.ended
        return linger_s(self.configured, previous_size=self.size, idle_s=idle, most=self.most)


async def take_waiting(
    waiting: asyncio.Queue[Any],
    reader: asyncio.Future[None],
    most: int,
    linger: Callable[[], float],
) -> list[Any]:
    """The records waiting now (at least one, at most ``most``): an idle stream answers a
    single record at once, and under load a batch grows with the backlog that built up while
    the previous one was written (group commit). ``linger()`` seconds are waited for more.
    Empty when the stream has ended (the worker stops); a failed stream raises its error.
    """
    get = asyncio.ensure_future(waiting.get())
    done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
    if get not in done:
        get.cancel()
        reader.result()
        return []
    events = [get.result()]
    deadline = asyncio.get_running_loop().time() + linger()
    while len(events) < most:
        if not waiting.empty():
            events.append(waiting.get_nowait())
            continue
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            break
        try:
            events.append(await asyncio.wait_for(waiting.get(), timeout=remaining))
        except TimeoutError:
            break
    return events


async def _ack(stream: Any, events: Sequence[Any]) -> None:
    for event in events:
        await stream.ack(event)


async def process_events(migrator: ServiceContext, events: Sequence[Any]) -> None:
    """Handle one batch of one request partition (its lane's): keep the records still ours to
    answer, apply them, publish their answers in one transaction with the partition's offset.

    All valid requests of the batch go through the core together (one database transaction
    that keeps each user's order); the answers come back in request order and are paired with
    their records in that order, then published to the source record's partition.
    """
    partition = events[0].message.partition
    if any(event.message.partition != partition for event in events):
        raise ValueError("a batch holds the records of one partition (its lane's)")
    epoch = migrator.epoch()
    claimed = await migrator.claim(partition, events, epoch)
    if not claimed:
        return
    records = [_Record.of(event.message) for event in claimed]
    core = await migrator.ready_core()
    migrator.in_flight += len(records)
    try:
        applied = await core.apply(
            [r.work for r in records if r.work is not None],
            rejected=[r.rejected for r in records if r.rejected is not None],
            abandoned=lambda: migrator.epoch() != epoch,
        )
    finally:
        migrator.in_flight -= len(records)
    if applied is None:
        log.info("batch left to the partition's next owner (rebalance during an outage)")
        return
    answers = iter(applied.outcomes)
    sends = [
        _send(r, None) if r.work is None else _send(r, next(answers), applied.encoded)
        for r in records
    ]
    last_offset = records[-1].message.offset
    if await migrator.publish_batch(partition, epoch, sends, last_offset):
        if partition in applied.totals:
            migrator.stats.data[str(partition)] = applied.totals[partition]
        migrator.control.observe(applied.outcomes)


class _Record:
    """A consumed record, decoded: either a request to apply or a rejection to dead-letter."""

    __slots__ = ("message", "request", "work", "rejected")

    def __init__(self, message: Any, request: MigrationRequest | Rejection) -> None:
        self.message = message
        self.request = request
        digest = _digest(message)
        self.work: Work | None = None
        self.rejected: Rejected | None = None
        if isinstance(request, Rejection):
            self.rejected = Rejected(message.partition, message.offset, digest)
        else:
            self.work = Work(
                request, message.partition, message.offset, _timestamp_ms(message), digest
            )

    @classmethod
    def of(cls, message: Any) -> _Record:
        return cls(message, decode_request(message.key, message.value))


def _send(
    record: _Record,
    outcome: Outcome | None,
    encoded: Callable[[Outcome], bytes] | None = None,
) -> Send:
    message = record.message
    origin = Origin(message.topic, message.partition, message.offset, _timestamp_ms(message))
    if isinstance(record.request, Rejection):
        value, headers = dead_letter(
            origin,
            key=message.key,
            value=message.value,
            headers=list(message.headers or []),
            reason=record.request.reason,
            message=record.request.message,
        )
        return Send(topics.DEAD_LETTER, message.key, value, headers)
    assert outcome is not None and encoded is not None
    headers = origin_headers(origin)
    if outcome.error is not None:
        headers = failure_headers(
            origin, code=outcome.error.code.value, retryable=outcome.error.retryable
        )
    return Send(
        topics.OUTCOME_TOPICS[outcome.outcome],
        outcome.user_id.encode("utf-8"),
        encoded(outcome),
        headers,
    )


def _digest(message: Any) -> bytes:
    """What tells this record from another one at the same position: its key and value."""
    hasher = hashlib.blake2b(digest_size=16)
    key = message.key
    hasher.update(b"-" if key is None else b"+" + len(key).to_bytes(4, "big") + key)
    hasher.update(message.value or b"")
    return hasher.digest()


def _timestamp_ms(message: Any) -> int | None:
    timestamp = getattr(message, "timestamp", None)
    return int(timestamp * 1000) if timestamp else None
