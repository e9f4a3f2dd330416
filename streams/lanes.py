"""Lanes: one per request partition, each answering its partition's records batch after batch
while the other lanes do the same; and how long a batch waits for company (group commit).

Stream mechanics only: what a batch is made of and when it goes. What is done with a batch is
the agent's (``streams.migrate_agent.process_batch``), handed in as ``process``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.control_watcher import ControlWatcher
    from streams.publishers import BatchPublisher
    from streams.settings import Settings


class Lanes:
    """One lane per request partition: each answers its partition's records in order, batch
    after batch, while the other lanes do the same.

    Why lanes: a batch spends most of its time waiting (PostgreSQL writing, a Kafka
    transaction committing). With one lane per partition, another partition's batch is decoded,
    decided and planned meanwhile, so PostgreSQL, Kafka and the worker work at the same time
    instead of taking turns. A user's requests share a partition (the key is the user id), so
    per-user order holds; partitions share nothing a batch locks but by accident (a user's
    requests keyed otherwise), which PostgreSQL settles like any lock wait.

    Records arrive a fetch at a time from the consumer (``offer``/``put``: the app's batch
    sink for the request topic), or one at a time from the agent's stream (``run``'s
    ``events``: what is sent to the agent itself, as in Faust's ``test_context``). A lane holds
    at most twice a batch before it holds the consumer back.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        control: ControlWatcher,
        publisher: BatchPublisher,
        process: Callable[[Sequence[Any]], Awaitable[None]],
        ack: Callable[[Any], object],
    ) -> None:
        self._size = settings.batch_size
        self._within = settings.batch_within_s
        self._control = control
        self._publisher = publisher
        self._process = process
        self._ack = ack
        self._lanes: dict[int, Lane] = {}
        self._tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        self._failed: asyncio.Future[None] = loop.create_future()
        self._ended: asyncio.Future[None] = loop.create_future()  # failed or closed
        self._reader: asyncio.Future[None] | None = None

    def offer(self, partition: int, messages: list[Any]) -> bool | None:
        """Take a fetch's records of a partition if its lane has room (a batch sink): True if
        taken, None if the lane is full, False once the lanes take no more."""
        if self._ended.done():
            return False
        lane = self._lane(partition)
        if lane.full():
            return None
        lane.put(messages)
        return True

    async def put(self, partition: int, messages: list[Any]) -> bool:
        """Take them once the lane has room; False once the lanes take no more (one failed,
        or they are closed): nobody would answer them here, so they are read again by
        whoever answers next."""
        while (taken := self.offer(partition, messages)) is None:
            await _until(self._lanes[partition].room, self._ended)
        return taken

    def _lane(self, partition: int) -> Lane:
        lane = self._lanes.get(partition)
        if lane is None:
            lane = self._lanes[partition] = Lane(2 * self._size)
            self._tasks.append(asyncio.ensure_future(self._answer(lane)))
        return lane

    async def _read(self, events: Any) -> None:
        """Hand each record the agent's stream yields to its partition's lane."""
        async for event in events:
            message = event.message
            if not await self.put(message.partition, [message]):
                return

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
        if not self._ended.done():
            self._ended.set_result(None)
        tasks: list[asyncio.Future[None]] = [*self._tasks]
        if self._reader is not None:
            tasks.append(self._reader)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._failed.done() and not self._failed.cancelled():
            self._failed.exception()  # retrieved: raised by ``run`` already, or moot on stop

    async def _answer(self, lane: Lane) -> None:
        reader = self._reader
        assert reader is not None  # records are taken once the agent runs
        pace = _Pace(self._within, self._size)
        control = self._control
        publisher = self._publisher
        try:
            while messages := await take_waiting(
                lane, reader, control.batch_limit(self._size), pace.linger
            ):
                if not await control.admit(len(messages), revoking=publisher.revoking):
                    # Stopping while paused: records that may be left unanswered go to the
                    # partition's next owner; the others are answered (an ack commits them).
                    if publisher.leaves_unanswered:
                        self._ack_all(messages)
                        continue
                try:
                    await self._process(messages)
                except BaseException:
                    if publisher.leaves_unanswered:
                        self._ack_all(messages)
                    raise
                self._ack_all(messages)
                pace.done(len(messages))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the agent, which re-raises it
            if not self._failed.done():
                self._failed.set_exception(exc)
            if not self._ended.done():
                self._ended.set_result(None)

    def _ack_all(self, messages: Sequence[Any]) -> None:
        ack = self._ack
        for message in messages:
            ack(message)


class Lane:
    """One partition's records waiting for its batches, in offset order as they arrived."""

    def __init__(self, most: int) -> None:
        self.waiting: deque[Any] = deque()
        self.most = most
        self.arrived = asyncio.Event()  # set while records wait
        self.room = asyncio.Event()  # set while fewer than ``most`` wait
        self.room.set()

    def full(self) -> bool:
        return len(self.waiting) >= self.most

    def put(self, messages: list[Any]) -> None:
        if not messages:
            return
        self.waiting.extend(messages)
        self.arrived.set()
        if self.full():
            self.room.clear()

    def take(self, most: int) -> list[Any]:
        waiting = self.waiting
        taken = [waiting.popleft() for _ in range(min(most, len(waiting)))]
        if not waiting:
            self.arrived.clear()
        if not self.full():
            self.room.set()
        return taken


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
    lane: Lane,
    reader: asyncio.Future[None],
    most: int,
    linger: Callable[[], float],
) -> list[Any]:
    """The records waiting now (at least one, at most ``most``): an idle stream answers a
    single record at once, and under load a batch grows with the backlog that built up while
    the previous one was written (group commit). ``linger()`` seconds are waited for more.
    Empty when the stream has ended (the worker stops); a failed stream raises its error.
    """
    while not lane.waiting:
        if not await _until(lane.arrived, reader):
            reader.result()
            return []
    taken = lane.take(most)
    if len(taken) >= most:
        return taken
    loop = asyncio.get_running_loop()
    deadline = loop.time() + linger()
    while len(taken) < most:
        if lane.waiting:
            taken += lane.take(most - len(taken))
            continue
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            await asyncio.wait_for(lane.arrived.wait(), timeout=remaining)
        except TimeoutError:
            break
    return taken


async def _until(event: asyncio.Event, ended: asyncio.Future[Any]) -> bool:
    """Wait for ``event``, or for ``ended`` to be done first (False then)."""
    if event.is_set():
        return True
    waiting: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiting, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not waiting.done():
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
    return event.is_set()
