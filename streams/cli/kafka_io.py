"""Kafka I/O of the operator commands: publishing requests and reading a topic back whole."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from schemas.events import MigrationRequest
from streams import topics
from streams.cli.errors import CliError
from streams.cli.output import Progress
from streams.connections import start_kafka_client
from streams.faust_internals import refresh_metadata
from streams.requests_out import encode
from streams.settings import Settings
from streams.trace_context import TraceContext

# The command line says in one line when Kafka is away; aiokafka's own log lines would repeat it.
logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


async def publish(
    settings: Settings,
    requests: Iterable[MigrationRequest],
    *,
    total: int,
    rate_per_s: float | None = None,
    label: str = "publishing",
    trace: Callable[[MigrationRequest], TraceContext] | None = None,
) -> int:
    """Publish requests keyed by user id; ``rate_per_s`` caps the pace. Returns how many.
    ``trace(request)``: the trace the request starts, carried in its ``traceparent`` header.

    The topics are created first if missing (as a worker would), so requests can be queued
    before the first worker ever started."""
    from streams.topic_admin import ensure_topics

    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=10,
        max_batch_size=512 * 1024,
        # A record Kafka has not taken within this fails (aiokafka drops it), so a command
        # whose Kafka went away stops within seconds and says how far it got.
        request_timeout_ms=PUBLISH_TIMEOUT_MS,
    )
    await start_kafka_client(producer)
    progress = Progress(total, label)
    sent = confirmed = 0
    started = time.monotonic()
    try:
        pending: list[asyncio.Future[object]] = []
        for request in requests:
            key, value = encode(request)
            headers = None if trace is None else trace(request).headers()
            pending.append(await producer.send(topics.REQUESTED, value, key=key, headers=headers))
            sent += 1
            if len(pending) >= 5_000:
                confirmed += await _confirmed(pending)
                pending.clear()
            if rate_per_s:
                ahead = sent / rate_per_s - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            progress.update(sent)
        confirmed += await _confirmed(pending)
        progress.update(sent, force=True)
    except _Lost as lost:
        raise CliError(
            f"Kafka stopped taking requests ({lost.cause}): {confirmed + lost.confirmed:,} of "
            f"{total:,} published, the rest not (those published will be answered; run the "
            "command again once Kafka is back: a user answered twice is told already_done)"
        ) from lost
    finally:
        await producer.stop()
    return sent


# The longest a request record waits for Kafka before the command gives up on it.
PUBLISH_TIMEOUT_MS = 10_000


class _Lost(Exception):
    def __init__(self, confirmed: int, cause: str) -> None:
        super().__init__(cause)
        self.confirmed = confirmed
        self.cause = cause


async def _confirmed(pending: list[asyncio.Future[object]]) -> int:
    """How many of the sends Kafka took, in order; ``_Lost`` from the first it did not.

    Sends of one producer are delivered in order per partition, and a failed one fails every
    send queued behind it there: counting the ones that succeeded is exact."""
    results = await asyncio.gather(*pending, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        first = failures[0]
        raise _Lost(len(results) - len(failures), str(first) or type(first).__name__)
    return len(results)


async def read_records(
    settings: Settings, *topic_names: str, idle_timeout_s: float = 2.0
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every committed record of the topics, from the beginning to their current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
    )
    await start_kafka_client(consumer)
    try:
        await refresh_metadata(consumer)
        assigned = [
            TopicPartition(name, partition)
            for name in topic_names
            for partition in sorted(consumer.partitions_for_topic(name) or ())
        ]
        if not assigned:
            return
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        # For read_committed, end offsets are the last stable offsets: everything committed.
        ends = await consumer.end_offsets(assigned)
        remaining = {tp for tp in assigned if ends[tp] > 0}
        idle_rounds = 0
        while remaining and idle_rounds < 3:
            batch = await consumer.getmany(*remaining, timeout_ms=int(idle_timeout_s * 1000))
            idle_rounds = 0 if batch else idle_rounds + 1
            for records in batch.values():
                for record in records:
                    yield record
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


async def read_topics(
    settings: Settings, *topic_names: str, idle_timeout_s: float = 2.0
) -> AsyncIterator[bytes]:
    """The values of every committed record of the topics."""
    async for record in read_records(settings, *topic_names, idle_timeout_s=idle_timeout_s):
        if record.value is not None:
            yield record.value
