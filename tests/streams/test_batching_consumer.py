"""``BatchingConsumer.hand_over`` (``streams.faust_internals``, register 10): what a fetch's
records of a partition become. Taken by the sink and tracked for Faust's rebalance wait; read
again from the first when no sink takes them; dropped, untracked, when a rebalance began since
they were fetched (every assignment seeks to the committed offsets).

The consumer is Faust's own, made by the app and not started: no Kafka is involved until a
seek, which is recorded here instead of reaching a client (the end-to-end tests seek for real).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from faust.types import TP, ConsumerMessage

from streams.faust_internals import BatchingConsumer, MigratorApp

TOPIC = "requests"
TP0 = TP(TOPIC, 0)


class Sink:
    """Takes what it is told to: ``answer`` is what ``offer`` says (None: full, then ``put``)."""

    def __init__(self, answer: bool | None, put_answer: bool = True) -> None:
        self.answer = answer
        self.put_answer = put_answer
        self.room = asyncio.Event()
        self.taken: list[list[int]] = []

    def offer(self, partition: int, messages: list[Any]) -> bool | None:
        if self.answer:
            self.taken.append([m.offset for m in messages])
        return self.answer

    async def put(self, partition: int, messages: list[Any]) -> bool:
        await self.room.wait()
        if self.put_answer:
            self.taken.append([m.offset for m in messages])
        return self.put_answer


@pytest.fixture
async def consumer() -> AsyncIterator[tuple[BatchingConsumer, list[tuple[TP, int]]]]:
    app: MigratorApp[Any] = MigratorApp("t", broker="kafka://localhost:1", rebalance=lambda a: None)
    app.topics.add(app.topic(TOPIC))
    await app.topics._update_indices()  # what subscribing does: the topic is acknowledged
    made = app.consumer
    assert isinstance(made, BatchingConsumer)
    seeks: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        seeks.append((tp, offset))

    made._seek = seek  # type: ignore[method-assign]
    made.REFUSED_RETRY_S = 0
    yield made, seeks


def fetched(app: Any, *offsets: int, generation: int | None = None) -> list[ConsumerMessage]:
    """Records as Faust's consumer makes them from a fetch."""
    current = app.consumer_generation_id if generation is None else generation
    return [
        ConsumerMessage(TOPIC, 0, o, 0.0, 0, [], b"k", b"v", None, generation_id=current)
        for o in offsets
    ]


async def test_records_the_sink_takes_are_tracked_and_the_stream_counts_as_busy(
    consumer: tuple[BatchingConsumer, list[tuple[TP, int]]],
) -> None:
    made, seeks = consumer
    sink = Sink(True)
    messages = fetched(made.app, 3, 4, 5)
    await made.hand_over(sink, TP0, messages)
    assert sink.taken == [[3, 4, 5]] and seeks == []
    assert all(m.tracked for m in messages)
    assert set(made._unacked_messages) == set(messages)  # a rebalance waits for their acks
    assert TP0 in made.app.monitor.stream_inbound_time  # Faust's livelock check sees a stream


async def test_a_full_sink_is_waited_for(
    consumer: tuple[BatchingConsumer, list[tuple[TP, int]]],
) -> None:
    made, seeks = consumer
    sink = Sink(None)
    handing = asyncio.ensure_future(made.hand_over(sink, TP0, fetched(made.app, 7)))
    await asyncio.sleep(0.01)
    assert not handing.done()
    sink.room.set()
    await asyncio.wait_for(handing, 1)
    assert sink.taken == [[7]] and seeks == []


@pytest.mark.parametrize("sink", [None, Sink(False), Sink(None, put_answer=False)])
async def test_records_nobody_takes_are_read_again_from_the_first(
    consumer: tuple[BatchingConsumer, list[tuple[TP, int]]], sink: Sink | None
) -> None:
    made, seeks = consumer
    if sink is not None:
        sink.room.set()
    messages = fetched(made.app, 10, 11)
    await made.hand_over(sink, TP0, messages)
    assert seeks == [(TP0, 10)]
    assert made._read_offset[TP0] == 10  # Faust's seek: offsets from 10 are taken again
    assert not made._unacked_messages and not any(m.tracked for m in messages)


async def test_records_fetched_before_a_rebalance_are_dropped_untracked(
    consumer: tuple[BatchingConsumer, list[tuple[TP, int]]],
) -> None:
    made, seeks = consumer
    sink = Sink(True)
    await made.hand_over(sink, TP0, fetched(made.app, 1, generation=-1))  # an older generation
    made.stop_flow()  # the rebalance has begun
    await made.hand_over(sink, TP0, fetched(made.app, 2))
    assert sink.taken == [] and seeks == [] and not made._unacked_messages


async def test_a_rebalance_that_begins_while_the_sink_is_full_drops_the_records(
    consumer: tuple[BatchingConsumer, list[tuple[TP, int]]],
) -> None:
    made, seeks = consumer
    sink = Sink(None)
    handing = asyncio.ensure_future(made.hand_over(sink, TP0, fetched(made.app, 4)))
    await asyncio.sleep(0.01)
    made.stop_flow()
    await asyncio.wait_for(handing, 1)  # the fetch loop is free for the rebalance
    assert sink.taken == [] and seeks == [] and not made._unacked_messages


async def test_refused_records_are_not_sought_once_a_rebalance_began_meanwhile(
    consumer: tuple[BatchingConsumer, list[tuple[TP, int]]],
) -> None:
    made, seeks = consumer
    made.REFUSED_RETRY_S = 0.05
    handing = asyncio.ensure_future(made.hand_over(None, TP0, fetched(made.app, 8)))
    await asyncio.sleep(0.01)
    made.stop_flow()  # the partition may be gone: a seek would be refused
    await asyncio.wait_for(handing, 1)
    assert seeks == []
