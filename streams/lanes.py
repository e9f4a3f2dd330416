"""Lanes: one per request partition, each answering its partition's records batch after batch
while the other lanes do the same; and how long a batch waits for company (group commit).

Stream mechanics only: what a batch is made of and when it goes. What is done with a batch is
the agent's (``streams.migrate_agent.process_batch``), handed in as ``process``.
"""

from __future__ import annotations

import asyncio
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
    """

    def __init__(
        self,
        stream: Any,
        *,
        settings: Settings,
        control: ControlWatcher,
        publisher: BatchPublisher,
        process: Callable[[Sequence[Any]], Awaitable[None]],
    ) -> None:
        self._stream = stream
        self._size = settings.batch_size
        self._within = settings.batch_within_s
        self._control = control
        self._publisher = publisher
        self._process = process
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
        control = self._control
        publisher = self._publisher
        try:
            while events := await take_waiting(
                queue, reader, control.batch_limit(self._size), pace.linger
            ):
                if not await control.admit(len(events), revoking=publisher.revoking):
                    # Stopping while paused: records that may be left unanswered go to the
                    # partition's next owner; the others are answered (an ack commits them).
                    if publisher.leaves_unanswered:
                        await _ack(self._stream, events)
                        continue
                try:
                    await self._process(events)
                except BaseException:
                    if publisher.leaves_unanswered:
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
