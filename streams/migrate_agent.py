"""The Faust agent ``migrate``: one request's walk, one way.

``migrate``'s lanes (``streams.lanes``) take the request records, a partition's fetch at a time
from the consumer (the app's batch sink for the topic). A lane's batch goes
through ``process_batch``: **claim** the records still this worker's to answer (the delivery
guarantee, ``streams.publishers``), **decode** each at the edge (invalid → a rejection, original
bytes kept), **apply** the batch (``agents.batch_applier``: one PostgreSQL transaction that
records every answer and advances the counters; the requests of a run cancelled on the control
topic are answered ``cancelled`` without being decided, ``apply_cancelling``), **build** the
Kafka records of the answers (``streams.codecs``, pure), **publish** them (one Kafka transaction
with the partition's offset under exactly-once). Each answer carries its request's trace; with
tracing on, each request gets a span linked to the batch's transactions (``streams.tracing``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from agents.batch_applier import BatchApplier
from agents.batch_transaction import Applied
from agents.core.control_state import ControlState
from agents.core.decide import Rejected, Work
from schemas.events import ErrorCode, MigrationRequest, Rejection, decode_request
from streams.codecs import Answer, Consumed, batch_records
from streams.context import ServiceContext
from streams.faust_internals import set_stat
from streams.lanes import Lanes
from streams.tracing import KAFKA_SPAN, BatchTrace

log = logging.getLogger(__name__)


def register_agents(context: ServiceContext) -> dict[str, Any]:
    """Create the agents on ``context.app``; returns them by name (tests drive them directly)."""

    # The topic's records always go to the lanes in batches, never through Faust's stream.
    topic = context.requests.get_topic_name()
    context.app.batch_sinks[topic] = None

    @context.app.agent(context.requests, name="migrate")
    async def migrate(stream: Any) -> None:
        # Acks are ours: a record is acknowledged once its answer is published (or, when the
        # publisher leaves it to the partition's next owner, once it is left; Faust does not
        # commit this topic then, the transactions do).
        manual = stream.noack()
        app = context.app

        async def process(messages: Sequence[Any]) -> None:
            await process_batch(context, messages)

        lanes = Lanes(
            settings=context.settings,
            control=context.control,
            publisher=context.publisher,
            process=process,
            ack=lambda message: message.ack(app.consumer),
        )
        # The consumer hands the topic's records to the lanes a fetch at a time; the stream
        # brings only what is sent to the agent itself. Registered before ``run`` yields.
        app.batch_sinks[topic] = lanes
        try:
            await lanes.run(manual.events())
        finally:
            if app.batch_sinks.get(topic) is lanes:
                app.batch_sinks[topic] = None  # read again until the agent is back
            await lanes.close()

    return {"migrate": migrate}


async def process_batch(context: ServiceContext, messages: Sequence[Any]) -> None:
    """Answer one batch of one request partition (its lane's): claim, decode, apply, build,
    publish. All valid requests of the batch go through the applier together (one database
    transaction that keeps each user's order); each answer is published to its request
    record's partition, with the partition's offset."""
    partition = messages[0].partition
    if any(message.partition != partition for message in messages):
        raise ValueError("a batch holds the records of one partition (its lane's)")
    publisher = context.publisher
    epoch = publisher.epoch()
    claimed = await publisher.claim(partition, messages, epoch)
    if not claimed:
        return
    records = [Consumed.of(message) for message in claimed]
    with context.tracing.batch(records, partition) as trace:
        await _answer(context, partition, epoch, records, trace)


async def _answer(
    context: ServiceContext,
    partition: int,
    epoch: int,
    records: Sequence[Consumed],
    trace: BatchTrace,
) -> None:
    """Decode, apply, build and publish the claimed records of one batch, within its trace."""
    publisher = context.publisher
    requests = [(record, decode_request(record.key, record.value)) for record in records]
    valid = [(record, r) for record, r in requests if isinstance(r, MigrationRequest)]
    rejections = [
        Rejected(record.origin.partition, record.origin.offset, record.digest())
        for record, r in requests
        if isinstance(r, Rejection)
    ]
    works = [_work(record, request) for record, request in valid]
    applier = await context.resources.applier()
    context.in_flight.records += len(records)
    try:
        applied = await apply_cancelling(
            applier,
            works,
            rejections,
            context.control.current,
            abandoned=lambda: publisher.epoch() != epoch,
        )
    finally:
        context.in_flight.records -= len(records)
    if applied is None:
        log.info("batch left to the partition's next owner (rebalance during an outage)")
        return
    # The valid requests are answered in the order they were given.
    answered = {
        record.origin.offset: (answer.outcome, answer.json)
        for (record, _), answer in zip(valid, applied.answers, strict=True)
    }
    answers: list[tuple[Consumed, Answer]] = [
        (record, r if isinstance(r, Rejection) else answered[record.origin.offset])
        for record, r in requests
    ]
    trace.answered(answers)
    sends = batch_records(answers, trace.contexts)
    last_offset = records[-1].origin.offset
    with trace.stage(KAFKA_SPAN, {"messaging.batch.message_count": len(sends)}):
        published = await publisher.publish(partition, epoch, sends, last_offset)
    if not published:
        trace.unpublished()
        return
    if partition in applied.totals:
        set_stat(context.stats, str(partition), applied.totals[partition])
    context.control.observe(applied.judged)


async def apply_cancelling(
    applier: BatchApplier,
    works: Sequence[Work],
    rejected: Sequence[Rejected],
    control: ControlState,
    *,
    abandoned: Callable[[], bool],
) -> Applied | None:
    """Apply a batch; requests of a cancelled run that were in the topic before its cancel are
    answered ``failed``/``cancelled`` without being decided (no user touched), the others as
    usual. Answers in ``works`` order.

    The cancelled requests are answered in a transaction of their own, before the others: a
    cancel changes no user, so the order between the two sets does not matter to anyone's
    state, and a batch without a cancelled request (all of them, in the normal course) stays
    one transaction. Both are recorded by position before the batch publishes, so a batch redone
    after a crash between them gets the first one's answers back.
    """
    cancels = [control.cancelled(w.request.run_id, w.partition, w.offset) for w in works]
    if not any(cancels):
        return await applier.apply(works, rejected=rejected, abandoned=abandoned)
    messages = {work: c.message() for work, c in zip(works, cancels, strict=True) if c}
    cancelled = [p for p, cancel in enumerate(cancels) if cancel is not None]
    kept = [p for p, cancel in enumerate(cancels) if cancel is None]
    first = await applier.answer_failed(
        [works[p] for p in cancelled],
        ErrorCode.CANCELLED,
        messages.__getitem__,
        abandoned=abandoned,
    )
    if first is None:
        return None
    second = await applier.apply([works[p] for p in kept], rejected=rejected, abandoned=abandoned)
    if second is None:
        return None
    answers = dict(zip(cancelled, first.answers, strict=True))
    answers.update(zip(kept, second.answers, strict=True))
    # The later transaction's counter totals include the earlier one's.
    return Applied(
        [answers[p] for p in range(len(works))],
        {**first.totals, **second.totals},
        first.mirror_pending + second.mirror_pending,
        frozenset(kept[p] for p in second.repeats),
    )


def _work(record: Consumed, request: MigrationRequest) -> Work:
    origin = record.origin
    return Work(request, origin.partition, origin.offset, origin.timestamp_ms, record.digest())
