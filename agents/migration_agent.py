"""The Faust agents: thin wiring around the migration core and the counters.

``migrate`` takes records in batches, decodes each at the edge (invalid → dead letter, original
bytes kept), hands all valid ones of the batch to the core at once, and publishes one outcome per
accepted record plus one stats delta per source partition, each inside that partition's
transaction. ``count`` folds the deltas into the per-partition ``stats`` table.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faust.exceptions import ProducerSendError

from agents import counters
from agents.decide import Work
from schemas.events import MigrationRequest, Outcome, Rejection, decode_request
from streams import topics
from streams.codecs import Origin, dead_letter, failure_headers

if TYPE_CHECKING:
    from streams.app import Migrator

log = logging.getLogger(__name__)


def register_agents(migrator: Migrator) -> dict[str, Any]:
    """Create the agents on ``migrator.app``; returns them by name (tests drive them directly)."""
    app = migrator.app
    settings = migrator.settings

    @app.agent(migrator.requests, name="migrate")
    async def migrate(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            async with migrator.commit_fence():
                await process_events(migrator, events)

    @app.agent(migrator.stats_deltas, name="count")
    async def count(stream: Any) -> None:
        # One delta at a time: each is folded and its partition's changelog record written in
        # that partition's transaction before the delta's offset can be committed.
        async for event in stream.events():
            async with migrator.commit_fence():
                partition = event.message.partition
                key = str(partition)
                total, applied = counters.fold(
                    migrator.stats.data.get(key) or counters.empty(),
                    event.value,
                    now_s=int(time.time()),
                )
                if applied:
                    await migrator.save_stats(key, total, partition=partition)
                else:
                    log.info("stats delta at offset %d already counted", event.message.offset)

    return {"migrate": migrate, "count": count}


async def process_events(migrator: Migrator, events: Sequence[Any]) -> None:
    """Handle one ``take_events`` batch: decode, apply in one go, publish per source partition.

    All valid requests of the batch go through the core together (one database transaction;
    a user's requests share a partition, and the core keeps each user's order). Outputs go to
    the source record's partition, so each partition's outputs share its Kafka transaction.
    """
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for event in events:
        by_partition[event.message.partition].append(event)
    decoded = {
        partition: [(e.message, decode_request(e.message.key, e.message.value)) for e in group]
        for partition, group in by_partition.items()
    }
    works = {
        partition: [
            Work(request, partition, message.offset, _timestamp_ms(message))
            for message, request in records
            if not isinstance(request, Rejection)
        ]
        for partition, records in decoded.items()
    }
    core = await migrator.ready_core()
    outcomes = iter(await core.apply([work for group in works.values() for work in group]))
    for partition, records in decoded.items():
        mine = works[partition]
        theirs = [next(outcomes) for _ in mine]
        try:
            await _publish_partition(migrator, partition, records, mine, theirs)
        except ProducerSendError as exc:
            # The partition was revoked mid-batch (rebalance): its transaction is gone, so its
            # records are not committed here and their new owner processes them again. The
            # database side is idempotent: the redelivered records replay the same outcomes.
            log.warning("partition %d left this worker mid-batch: %s", partition, exc)


async def _publish_partition(
    migrator: Migrator,
    partition: int,
    records: Sequence[tuple[Any, MigrationRequest | Rejection]],
    works: Sequence[Work],
    outcomes: Sequence[Outcome],
) -> None:
    """One partition's outputs, all into its transaction: dead letters, outcomes, stats delta."""
    pending: list[Any] = []
    for message, request in records:
        if isinstance(request, Rejection):
            pending.append(await _dead_letter(migrator, message, request))
    for work, outcome in zip(works, outcomes, strict=True):
        pending.append(await _publish_outcome(migrator, work, outcome))
    now = time.time()
    delta = counters.batch_delta(
        outcomes,
        [_latency_ms(work, now) for work in works],
        dead_lettered=len(records) - len(works),
        now_s=int(now),
        source_first=records[0][0].offset,
        source_last=records[-1][0].offset,
    )
    pending.append(
        await migrator.publish(
            migrator.stats_deltas,
            key=str(partition).encode(),
            value=_json(delta),
            partition=partition,
        )  # fmt: skip
    )
    # Wait for delivery before the batch's offsets can be acknowledged (at-least-once needs
    # it; under exactly-once the commit would flush them anyway).
    for future in pending:
        await future


async def _dead_letter(migrator: Migrator, message: Any, rejection: Rejection) -> Any:
    origin = Origin(message.topic, message.partition, message.offset, _timestamp_ms(message))
    value, headers = dead_letter(
        origin,
        key=message.key,
        value=message.value,
        headers=list(message.headers or []),
        reason=rejection.reason,
        message=rejection.message,
    )
    return await migrator.publish(
        migrator.dead_letters, key=message.key, value=value, partition=message.partition,
        headers=headers,
    )  # fmt: skip


async def _publish_outcome(migrator: Migrator, work: Work, outcome: Outcome) -> Any:
    assert work.partition is not None and work.offset is not None
    headers = None
    if outcome.error is not None:
        origin = Origin(topics.REQUESTED, work.partition, work.offset, work.timestamp_ms)
        headers = failure_headers(
            origin, code=outcome.error.code.value, retryable=outcome.error.retryable
        )
    return await migrator.publish(
        migrator.outcome_topics[outcome.outcome],
        key=outcome.user_id.encode("utf-8"),
        value=outcome.model_dump_json().encode("utf-8"),
        partition=work.partition,
        headers=headers,
    )


def _timestamp_ms(message: Any) -> int | None:
    timestamp = getattr(message, "timestamp", None)
    return int(timestamp * 1000) if timestamp else None


def _latency_ms(work: Work, now_s: float) -> float | None:
    if work.timestamp_ms is None:
        return None
    return max(0.0, now_s * 1000 - work.timestamp_ms)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")
