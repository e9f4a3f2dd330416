"""``TransactionalPublisher.claim``: which records of a batch this worker still answers, and the
seek guard that reads a partition again when records before a batch never arrived.

The transactions and the consumer are stood in by plain objects: ``claim`` only reads the
positions and asks the consumer to seek (the real seek runs in the end-to-end fault test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from streams.exactly_once import PartitionTransactions
from streams.publishers import TransactionalPublisher


@dataclass
class Consumer:
    seeks: list[tuple[Any, int]] = field(default_factory=list)

    async def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))


def context(committed: dict[int, int | None]) -> tuple[TransactionalPublisher, Consumer]:
    transactions = PartitionTransactions(
        source_topic="requests",
        group_id="g",
        app_id="a",
        new_producer=lambda _: None,  # type: ignore[arg-type,return-value]
        probe=None,  # no fetch to prove a hole empty: every hole is read again
    )
    transactions.positions.assign(set(committed), committed)
    consumer = Consumer()
    app = SimpleNamespace(consumer=consumer)
    return TransactionalPublisher(app, transactions), consumer  # type: ignore[arg-type]


def records(*offsets: int) -> list[Any]:
    return [SimpleNamespace(offset=o) for o in offsets]


def offsets(kept: list[Any]) -> list[int]:
    return [record.offset for record in kept]


async def test_records_from_the_committed_offset_on_are_claimed_in_offset_order() -> None:
    ctx, consumer = context({0: 10})
    assert offsets(await ctx.claim(0, records(11, 10, 12, 11), epoch=0)) == [10, 11, 12]
    assert consumer.seeks == []


async def test_stale_copies_below_the_committed_offset_are_dropped() -> None:
    ctx, _ = context({0: 10})
    assert offsets(await ctx.claim(0, records(8, 9, 10), epoch=0)) == [10]
    assert await ctx.claim(0, records(8, 9), epoch=0) == []


async def test_a_gap_before_the_batch_seeks_back_and_claims_nothing() -> None:
    ctx, consumer = context({0: 10})
    assert await ctx.claim(0, records(14, 15), epoch=0) == []
    assert [(tp.topic, tp.partition, offset) for tp, offset in consumer.seeks] == [
        ("requests", 0, 10)
    ]
    # Copies buffered before the seek show the same gap: nothing claimed, no second seek.
    assert await ctx.claim(0, records(14, 15), epoch=0) == []
    assert len(consumer.seeks) == 1


async def test_a_record_missing_inside_the_batch_answers_the_run_before_it_and_seeks() -> None:
    ctx, consumer = context({1: 363})
    kept = await ctx.claim(1, records(363, *range(365, 376)), epoch=0)
    assert offsets(kept) == [363]
    assert [(tp.partition, offset) for tp, offset in consumer.seeks] == [(1, 364)]


async def test_nothing_is_claimed_for_a_partition_no_longer_owned_or_from_an_old_epoch() -> None:
    ctx, _ = context({0: 10})
    assert await ctx.claim(1, records(10), epoch=0) == []
    assert await ctx.claim(0, records(10), epoch=1) == []
