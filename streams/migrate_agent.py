"""The Faust agent ``migrate``: one request's walk, one way.

``migrate`` hands each record to its partition's lane (``streams.lanes``). A lane's batch goes
through ``process_batch``: **claim** the records still this worker's to answer (the delivery
guarantee, ``streams.publishers``), **decode** each at the edge (invalid → a rejection, original
bytes kept), **apply** the batch (``agents.batch_applier``: one PostgreSQL transaction that
records every answer and advances the counters), **build** the Kafka records of the answers
(``streams.codecs``, pure), **publish** them (one Kafka transaction with the partition's offset
under exactly-once).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from agents.core.decide import Rejected, Work
from schemas.events import MigrationRequest, Rejection, decode_request
from streams.codecs import Answer, Consumed, batch_records
from streams.context import ServiceContext
from streams.faust_internals import set_stat
from streams.lanes import Lanes

log = logging.getLogger(__name__)


def register_agents(context: ServiceContext) -> dict[str, Any]:
    """Create the agents on ``context.app``; returns them by name (tests drive them directly)."""

    @context.app.agent(context.requests, name="migrate")
    async def migrate(stream: Any) -> None:
        # Acks are ours: a record is acknowledged once its answer is published (or, when the
        # publisher leaves it to the partition's next owner, once it is left; Faust does not
        # commit this topic then, the transactions do).
        manual = stream.noack()

        async def process(events: Sequence[Any]) -> None:
            await process_batch(context, events)

        lanes = Lanes(
            manual,
            settings=context.settings,
            control=context.control,
            publisher=context.publisher,
            process=process,
        )
        try:
            await lanes.run(manual.events())
        finally:
            await lanes.close()

    return {"migrate": migrate}


async def process_batch(context: ServiceContext, events: Sequence[Any]) -> None:
    """Answer one batch of one request partition (its lane's): claim, decode, apply, build,
    publish. All valid requests of the batch go through the applier together (one database
    transaction that keeps each user's order); each answer is published to its request
    record's partition, with the partition's offset."""
    partition = events[0].message.partition
    if any(event.message.partition != partition for event in events):
        raise ValueError("a batch holds the records of one partition (its lane's)")
    publisher = context.publisher
    epoch = publisher.epoch()
    claimed = await publisher.claim(partition, events, epoch)
    if not claimed:
        return
    records = [Consumed.of(event.message) for event in claimed]
    requests = [(record, decode_request(record.key, record.value)) for record in records]
    valid = [(record, r) for record, r in requests if isinstance(r, MigrationRequest)]
    rejections = [
        Rejected(record.origin.partition, record.origin.offset, record.digest())
        for record, r in requests
        if isinstance(r, Rejection)
    ]
    applier = await context.resources.applier()
    context.in_flight.records += len(records)
    try:
        applied = await applier.apply(
            [_work(record, request) for record, request in valid],
            rejected=rejections,
            abandoned=lambda: publisher.epoch() != epoch,
        )
    finally:
        context.in_flight.records -= len(records)
    if applied is None:
        log.info("batch left to the partition's next owner (rebalance during an outage)")
        return
    # The applier answers the valid requests in the order they were given.
    answered = {
        record.origin.offset: (answer.outcome, answer.json)
        for (record, _), answer in zip(valid, applied.answers, strict=True)
    }
    answers: list[tuple[Consumed, Answer]] = [
        (record, r if isinstance(r, Rejection) else answered[record.origin.offset])
        for record, r in requests
    ]
    last_offset = records[-1].origin.offset
    if await publisher.publish(partition, epoch, batch_records(answers), last_offset):
        if partition in applied.totals:
            set_stat(context.stats, str(partition), applied.totals[partition])
        context.control.observe(applied.new_outcomes)


def _work(record: Consumed, request: MigrationRequest) -> Work:
    origin = record.origin
    return Work(request, origin.partition, origin.offset, origin.timestamp_ms, record.digest())
