"""The Faust agent: thin wiring around the migration core and the per-partition transactions.

``migrate`` takes records in batches, decodes each at the edge (invalid → dead letter, original
bytes kept), hands all records of the batch to the core at once (one PostgreSQL transaction that
records every answer and advances the counters), then publishes each source partition's outcomes
and dead letters in one Kafka transaction with that partition's offset.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agents.decide import Rejected, Work
from schemas.events import MigrationRequest, Outcome, Rejection, decode_request
from streams import topics
from streams.codecs import Origin, dead_letter, failure_headers
from streams.exactly_once import Send

if TYPE_CHECKING:
    from streams.context import ServiceContext

log = logging.getLogger(__name__)


def register_agents(migrator: ServiceContext) -> dict[str, Any]:
    """Create the agents on ``migrator.app``; returns them by name (tests drive them directly)."""
    app = migrator.app
    settings = migrator.settings

    @app.agent(migrator.requests, name="migrate")
    async def migrate(stream: Any) -> None:
        # Acks are ours: a record is acknowledged once its answer is published (or, under
        # exactly-once, once it is left to the partition's next owner; Faust does not commit
        # this topic then, the transactions do).
        manual = stream.noack()
        waiting: asyncio.Queue[Any] = asyncio.Queue(maxsize=2 * settings.batch_size)

        async def read() -> None:
            async for event in manual.events():
                await waiting.put(event)

        reader = asyncio.ensure_future(read())
        try:
            while events := await take_waiting(
                waiting, reader, settings.batch_size, settings.batch_within_s
            ):
                try:
                    await process_events(migrator, events)
                except BaseException:
                    if migrator.transactions is not None:
                        await _ack(manual, events)
                    raise
                await _ack(manual, events)
        finally:
            reader.cancel()

    return {"migrate": migrate}


async def take_waiting(
    waiting: asyncio.Queue[Any], reader: asyncio.Future[None], most: int, linger_s: float
) -> list[Any]:
    """The records waiting now (at least one, at most ``most``): an idle stream answers a
    single record at once, and under load a batch grows with the backlog that built up while
    the previous one was written (group commit). ``linger_s`` > 0 waits that long for more.
    Empty when the stream has ended (the worker stops); a failed stream raises its error.
    """
    get = asyncio.ensure_future(waiting.get())
    done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
    if get not in done:
        get.cancel()
        reader.result()
        return []
    events = [get.result()]
    deadline = asyncio.get_running_loop().time() + linger_s
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
    """Handle one batch: keep the records still ours to answer, apply them, publish per partition.

    All valid requests of the batch go through the core together (one database transaction;
    a user's requests share a partition, and the core keeps each user's order). Outputs go to
    the source record's partition, so each partition's outputs share its Kafka transaction.
    """
    epoch = migrator.epoch()
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for event in events:
        by_partition[event.message.partition].append(event)
    claimed = {
        partition: kept
        for partition, group in by_partition.items()
        if (kept := await migrator.claim(partition, group, epoch))
    }
    if not claimed:
        return
    records = {
        partition: [_Record.of(event.message) for event in group]
        for partition, group in claimed.items()
    }
    works = [r.work for group in records.values() for r in group if r.work is not None]
    rejected = [r.rejected for group in records.values() for r in group if r.rejected is not None]
    core = await migrator.ready_core()
    applied = await core.apply(
        works, rejected=rejected, abandoned=lambda: migrator.epoch() != epoch
    )
    if applied is None:
        log.info("batch left to the partitions' next owner (rebalance during an outage)")
        return
    outcomes = iter(applied.outcomes)
    answers = {
        partition: [(r, next(outcomes) if r.work is not None else None) for r in group]
        for partition, group in records.items()
    }
    published = await asyncio.gather(
        *(
            migrator.publish_batch(
                partition, epoch, [_send(r, o) for r, o in pairs], pairs[-1][0].message.offset
            )
            for partition, pairs in answers.items()
        )
    )
    for partition, done in zip(answers, published, strict=True):
        if done and partition in applied.totals:
            migrator.stats.data[str(partition)] = applied.totals[partition]


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


def _send(record: _Record, outcome: Outcome | None) -> Send:
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
    assert outcome is not None
    headers = []
    if outcome.error is not None:
        headers = failure_headers(
            origin, code=outcome.error.code.value, retryable=outcome.error.retryable
        )
    return Send(
        topics.OUTCOME_TOPICS[outcome.outcome],
        outcome.user_id.encode("utf-8"),
        outcome.model_dump_json().encode("utf-8"),
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
