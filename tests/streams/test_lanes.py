"""The lanes as the consumer's batch sink (``streams.lanes``): what a lane takes, when it holds
the consumer back, and that each partition's records are answered in order, a batch at a time.

The control watcher and the publisher are stood in by plain objects: the lanes ask them only
whether a batch may start and whether records may be left unanswered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from streams.lanes import Lane, Lanes, take_waiting


class Control:
    def batch_limit(self, size: int) -> int:
        return size

    async def admit(self, n: int, *, revoking: Any) -> bool:
        return True


@dataclass
class Publisher:
    leaves_unanswered: bool = True

    def revoking(self) -> bool:
        return False


def records(partition: int, *offsets: int) -> list[Any]:
    return [SimpleNamespace(partition=partition, offset=o) for o in offsets]


async def nothing() -> AsyncIterator[Any]:
    """A stream that yields nothing until it is closed (the worker stops)."""
    await asyncio.Event().wait()
    yield None  # pragma: no cover


async def running(lanes: Lanes, events: AsyncIterator[Any] | None = None) -> asyncio.Task[None]:
    task = asyncio.ensure_future(lanes.run(events or nothing()))
    await asyncio.sleep(0)
    return task


async def until(condition: Any, timeout_s: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.005)


async def stopped(lanes: Lanes, task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await lanes.close()


def lanes_of(batch_size: int, process: Any, acked: list[Any] | None = None) -> Lanes:
    settings = SimpleNamespace(batch_size=batch_size, batch_within_s=0.0)
    return Lanes(
        settings=settings,  # type: ignore[arg-type]
        control=Control(),  # type: ignore[arg-type]
        publisher=Publisher(),  # type: ignore[arg-type]
        process=process,
        ack=(acked if acked is not None else []).append,
    )


async def test_a_fetch_is_answered_in_batches_in_offset_order_and_acknowledged() -> None:
    batches: list[list[int]] = []
    acked: list[Any] = []

    async def process(messages: Sequence[Any]) -> None:
        batches.append([m.offset for m in messages])
        await asyncio.sleep(0.01)

    lanes = lanes_of(3, process, acked)
    task = await running(lanes)
    assert lanes.offer(0, records(0, 0, 1, 2, 3, 4)) is True
    assert lanes.offer(1, records(1, 7)) is True
    await until(lambda: len(acked) == 6)
    assert [b for b in batches if b != [7]] == [[0, 1, 2], [3, 4]]  # at most a batch each
    assert [7] in batches  # the other partition's lane answered meanwhile
    assert sorted(m.offset for m in acked) == [0, 1, 2, 3, 4, 7]
    await stopped(lanes, task)


async def test_a_full_lane_refuses_an_offer_and_holds_a_put_until_it_has_room() -> None:
    release = asyncio.Event()

    async def process(messages: Sequence[Any]) -> None:
        await release.wait()

    lanes = lanes_of(2, process)
    task = await running(lanes)
    assert lanes.offer(0, records(0, 0, 1)) is True  # taken by the lane's first batch
    await asyncio.sleep(0.01)
    assert lanes.offer(0, records(0, 2, 3, 4, 5)) is True  # waiting: twice a batch
    assert lanes.offer(0, records(0, 6)) is None  # full: the consumer must wait
    assert lanes.offer(1, records(1, 0)) is True  # another partition has its own room
    put = asyncio.ensure_future(lanes.put(0, records(0, 6)))
    await asyncio.sleep(0.02)
    assert not put.done()
    release.set()
    assert await asyncio.wait_for(put, 1) is True
    await stopped(lanes, task)


async def test_once_a_lane_failed_the_run_fails_and_no_record_is_taken() -> None:
    async def process(messages: Sequence[Any]) -> None:
        raise RuntimeError("PostgreSQL said no")

    lanes = lanes_of(1, process)
    task = await running(lanes)
    assert lanes.offer(0, records(0, 0)) is True
    with pytest.raises(RuntimeError, match="PostgreSQL said no"):
        await asyncio.wait_for(task, 1)
    # Nobody would answer them here: refused, so the consumer reads them again for the next.
    assert lanes.offer(0, records(0, 1)) is False
    assert await asyncio.wait_for(lanes.put(1, records(1, 0)), 1) is False
    await lanes.close()
    assert 1 not in lanes._lanes  # no lane was started for them


async def test_a_put_waiting_for_room_is_refused_when_the_lanes_close() -> None:
    release = asyncio.Event()

    async def process(messages: Sequence[Any]) -> None:
        await release.wait()

    lanes = lanes_of(1, process)
    task = await running(lanes)
    lanes.offer(0, records(0, 0))
    await asyncio.sleep(0.01)
    lanes.offer(0, records(0, 1, 2))  # the lane is full behind its first batch
    put = asyncio.ensure_future(lanes.put(0, records(0, 3)))
    await asyncio.sleep(0.01)
    assert not put.done()
    await stopped(lanes, task)
    assert await asyncio.wait_for(put, 1) is False  # the fetch loop is not held for good
    assert lanes.offer(1, records(1, 0)) is False


async def test_records_sent_to_the_agent_itself_reach_their_lane() -> None:
    answered: list[int] = []

    async def process(messages: Sequence[Any]) -> None:
        answered.extend(m.offset for m in messages)

    async def events() -> AsyncIterator[Any]:
        for record in records(2, 5, 6):
            yield SimpleNamespace(message=record)

    lanes = lanes_of(10, process)
    await asyncio.wait_for(lanes.run(events()), 1)  # the stream ended: every lane drained
    assert answered == [5, 6]
    await lanes.close()


async def test_take_waiting_takes_what_waits_up_to_the_most_and_lingers_for_more() -> None:
    lane = Lane(10)
    reader: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    lane.put(records(0, 0, 1, 2))
    assert [m.offset for m in await take_waiting(lane, reader, 2, lambda: 0.0)] == [0, 1]
    assert [m.offset for m in await take_waiting(lane, reader, 5, lambda: 0.0)] == [2]
    asyncio.get_running_loop().call_later(0.01, lane.put, records(0, 3))
    asyncio.get_running_loop().call_later(0.02, lane.put, records(0, 4))
    taken = await take_waiting(lane, reader, 5, lambda: 0.2)  # the first waits, then lingers
    assert [m.offset for m in taken] == [3, 4]
    lane.put([])  # nothing: the lane stays empty, not woken for nothing
    assert not lane.arrived.is_set()
    reader.set_result(None)
    assert await take_waiting(lane, reader, 5, lambda: 0.0) == []  # ended and empty
