"""Every use of Faust's and aiokafka's internals, in one place, and the Faust app that uses them.

Nothing else in the service reaches behind Faust's or aiokafka's public names: what needs one of
these calls it here, and the register below says why each is needed.

Register of internals (checked against faust-streaming 0.15.3 and aiokafka 0.14.0; the canary
``tests/streams/test_faust_internals.py::test_the_internals_we_rely_on_are_there`` fails on a
version where a name is gone, and ``pyproject.toml`` caps both below their next minor version):

1. ``faust.App._on_partitions_revoked`` / ``_on_partitions_assigned`` are overridden
   (``MigratorApp``). Corrects: Faust tells the app about a revocation only after waiting for
   in-flight records, too late to stop a batch from committing. Proven by the SIGKILL,
   rebalance and fault end-to-end tests (``tests/e2e``).
2. ``faust.transport.consumer.Consumer._commit_offsets`` is wrapped and ``_committed_offset``
   updated by hand (``exclude_from_faust_commits``). Corrects: Faust commits acked offsets on
   its own timer and at rebalances, which would race the transactions' commits. Proven by the
   same end-to-end tests (no duplicate outcome after a kill or a rebalance).
3. ``Consumer.seek_to_committed`` and ``Consumer.seek`` (on Faust's consumer, not on
   ``ConsumerT``): read where a partition stands after the fencing; read records again after a
   gap. Proven by the fault test (worker kill, stop, Kafka restart).
4. aiokafka ``TransactionManager.wait_for_pid``, ``is_fatal_error`` and ``state``
   (``producer._txn_manager``): know the transactional id is registered (the fencing happened)
   before offsets are read; know whether a failed transaction can be aborted (and is still
   open: aborting twice is an ``AssertionError`` that crashed the agent when Kafka restarted
   mid-send), and not when the producer is in a fatal state. Proven by the fault test and
   ``tests/streams/test_exactly_once.py::test_a_transaction_is_aborted_once``.
5. ``faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer`` is
   wrapped to set the aiokafka consumer's ``_fetch_max_wait_ms`` and ``_isolation_level``
   (``configure_worker_consumer``). Corrects, first: Faust reads ``read_uncommitted`` unless
   its own exactly-once is on, so requests published in an upstream transaction that was then
   aborted were migrated and answered (found by ``tests/e2e/test_holes.py``, which publishes
   requests in transactions, one aborted). Second: Faust hard-codes 1,500 ms, and aiokafka
   keeps one fetch in flight per broker. A
   fetch sent while the busy request partitions still hold undelivered records asks only for
   idle partitions (Faust's leader topic); the broker parks it for the whole wait, and nothing
   is fetched for the busy ones meanwhile. Under a steady load the worker locked into that
   cycle: records ~1.6 s old in bursts, half-load p50 1.4-1.7 s instead of 0.2 s, in 2 of 3
   runs at 1,600 requests/s, none of 5 with the bound. Proven by
   ``tests/streams/test_faust_internals.py::test_fetches_wait_at_most_the_bound`` and the half-load
   figure of ``make bench``.
6. aiokafka ``AIOKafkaConsumer.pause`` / ``resume`` on the consumer Faust's driver holds
   (``Consumer._thread._ensure_consumer()``), for run control's pause (``pause_fetching``).
   Corrects: Faust's own ``pause_partitions`` only filters what its fetch loop hands on, and a
   fetch already under way when a partition is paused loses its records for that partition
   (Faust skips them, aiokafka's position has moved past them): a gap after every resume.
   aiokafka's pause leaves the position where delivery stopped and drops the undelivered
   fetch, so the resume reads on from exactly there. Proven by
   ``tests/e2e/test_run_control.py`` (a pause during a flood: every request answered once).
7. ``faust.Table.data``: the stats table's entries are set and read directly (``set_stat``,
   ``stats_of``), never through the changelog (why: ``streams.app``, where the table is made).
8. aiokafka ``AIOKafkaConsumer._client.force_metadata_update()`` (``refresh_metadata``), used by
   ``streams.partition_reader`` and the CLI's Kafka reader: a consumer assigned partitions by
   hand learns of partitions or leaders that changed only at its next metadata refresh; there
   is no public call to ask for it now.
9. aiokafka ``AIOKafkaProducer._sender.sender_task``, ``_closed`` and ``client``
   (``abandon_producer``): stop a producer without waiting for a Kafka that is away, used by
   ``streams.transactional_writer`` and, after every failed partition transaction, by
   ``streams.exactly_once`` (the producer is closed and its transactional id registered again,
   so the new epoch fences whatever the old one left in flight: aiokafka speaks the oldest
   transaction request versions, whose gaps KIP-890 closes only for newer clients). Proven by
   the fault test and the 3-broker run of ``tests/e2e/test_topology.py``.
10. ``faust.App._new_transport`` is overridden (``MigratorApp``) to make the app's consumer a
    ``BatchingConsumer``, which overrides ``Consumer._drain_messages`` (and reads
    ``_read_offset``, ``_add_gap``, ``_n_acked``, ``_commit_every``, ``_unacked_messages``,
    ``suspend_flow`` and ``diag`` as Faust's own loop does, and sets the monitor's
    ``stream_inbound_time`` as Faust's stream does). Corrects: Faust hands every record on
    alone, through four tasks (``wait_first``), the conductor, the topic's channel queue and the
    stream's iterator: about a quarter of the worker's event-loop thread in a flood. The records
    of a topic in ``MigratorApp.batch_sinks`` (the request topic, whose sink is the agent's
    lanes) go to its sink a partition's fetch at a time instead; every other topic's records
    take Faust's path. Proven by every end-to-end test (all requests travel this way), the fault
    test, ``tests/e2e/test_holes.py`` (records lost on the way are found by the hole guard) and
    ``tests/streams/test_batching_consumer.py`` (what is handed over, tracked, dropped or read
    again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.producer.transaction_manager import TransactionState
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP, TransportT

# Transaction states ``abort_transaction`` accepts (an open transaction, or one failed abortably).
_ABORTABLE = (TransactionState.IN_TRANSACTION, TransactionState.ABORTABLE_ERROR)


class RebalanceListener(Protocol):
    """What must hear of a rebalance before Faust acts on it (the delivery guarantee)."""

    async def on_revoking(self) -> None: ...

    async def on_assigned(self, assigned: set[TP]) -> None: ...


Listener = TypeVar("Listener", bound=RebalanceListener)


class BatchSink(Protocol):
    """Takes a topic's records a partition's fetch at a time (``MigratorApp.batch_sinks``)."""

    def offer(self, partition: int, messages: list[Any]) -> bool | None:
        """Take the records now if there is room: True if taken, None if there is no room yet,
        False if this sink takes no more (failed or closed)."""
        ...

    async def put(self, partition: int, messages: list[Any]) -> bool:
        """Take the records once there is room (the fetching waits meanwhile); False if this
        sink takes no more."""
        ...


class MigratorApp(faust.App, Generic[Listener]):
    """Faust's app, telling the delivery guarantee about a rebalance before Faust acts, and
    handing the records of a topic with a batch sink over in batches.

    The revocation must be known before Faust waits for in-flight records (a batch that sees it
    stops instead of committing), and the assignment must register the partitions'
    transactional ids before anything is read from them (register, 1). ``rebalance`` makes the
    listener (the publisher ``create_app`` chose) from the app, once the app exists.
    """

    def __init__(
        self, *args: Any, rebalance: Callable[[MigratorApp[Any]], Listener], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.rebalance = rebalance(self)
        # Called once Faust has taken an assignment in (run control re-pauses partitions).
        self.assignment_listeners: list[Callable[[], None]] = []
        # Topic name -> who takes its records in batches, past Faust's streams (register, 10);
        # None while nobody does (the agent starts or restarts): its records are read again.
        self.batch_sinks: dict[str, BatchSink | None] = {}

    def _new_transport(self) -> TransportT:
        transport: TransportT = _BatchingTransport(self.conf.broker_consumer, self)
        return transport

    async def _on_partitions_revoked(self, revoked: set[TP]) -> None:
        await self.rebalance.on_revoking()
        await super()._on_partitions_revoked(revoked)

    async def _on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        if not self.should_stop:
            try:
                await self.rebalance.on_assigned(assigned)
            except Exception as exc:  # noqa: BLE001 - Kafka refused; a crash is the last resort
                await self.crash(exc)
                return
        await super()._on_partitions_assigned(assigned, generation_id)
        for listener in self.assignment_listeners:
            listener()


class BatchingConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, whose fetch loop hands the records of a topic with a batch
    sink to it, a partition's fetch at a time (register, 10).

    The rest is Faust's loop as it is: records read before a seek back are dropped, the gaps in
    an acknowledged topic are noted for Faust's commits. And what Faust's stream skips is
    skipped: records fetched before a rebalance began (the flow suspended, or a newer
    generation) are dropped, since every assignment seeks to the committed offsets. Records no
    sink takes (none registered, or it failed or closed) are read again from the first.
    """

    # How long the loop waits before reading refused records again: a sink is back within
    # moments (the agent restarting), and a fetch loop must not spin meanwhile.
    REFUSED_RETRY_S = 0.1

    async def _drain_messages(self, fetcher: Any) -> None:
        app: Any = self.app
        sinks: dict[str, BatchSink | None] = app.batch_sinks
        read_offset = self._read_offset
        acks_enabled_for = app.topics.acks_enabled_for
        try:
            while not (self.should_stop or fetcher.should_stop):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = self.getmany(timeout=1.0)
                await self.sleep(0)  # Faust's loop yields here too: a fetch may be instant
                if self.should_stop:
                    break
                batches: dict[TP, list[Any]] = {}
                async for tp, message in fetched:
                    offset, previous = message.offset, read_offset[tp]
                    if previous is not None and offset < previous:
                        continue  # read before a seek back to ``previous``
                    if previous and offset - previous > 1 and acks_enabled_for(tp.topic):
                        await self._add_gap(tp, previous + 1, offset)
                    if tp.topic in sinks:
                        batches.setdefault(tp, []).append(message)
                    else:
                        await self._hand_on(message)
                    read_offset[tp] = offset
                for tp, messages in batches.items():
                    await self.hand_over(sinks.get(tp.topic), tp, messages)
                await self._commit_if_due()
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not app.should_stop:
                raise
        except asyncio.CancelledError:
            if not app.should_stop:
                raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def hand_over(self, sink: BatchSink | None, tp: TP, messages: list[Any]) -> None:
        """A partition's records of one fetch, to its sink. Those it takes are tracked as
        Faust's stream tracks what it yields, so a rebalance waits for their acks as before."""
        app: Any = self.app
        if self._fetched_before_rebalance(messages[0]):
            return  # read again from the committed offsets once assigned
        taken = sink.offer(tp.partition, messages) if sink is not None else False
        if taken is None:
            assert sink is not None
            put = sink.put(tp.partition, messages)
            waited = await self.wait_first(put, self.suspend_flow.wait())
            if put not in waited.done:
                return  # a rebalance began while the sink was full: as above
            taken = bool(waited.results[waited.done.index(put)])
        if not taken:
            await self.sleep(self.REFUSED_RETRY_S)
            # Checked again: a rebalance begun meanwhile may have taken the partition away
            # (a seek is refused then), and seeks to the committed offsets itself.
            if not self._fetched_before_rebalance(messages[0]):
                await self.seek(tp, messages[0].offset)
            return
        app.monitor.stream_inbound_time[tp] = time.monotonic()  # the stream is not idle
        if app.topics.acks_enabled_for(tp.topic):
            unacked = self._unacked_messages
            for message in messages:
                message.tracked = True
                unacked.add(message)

    def _fetched_before_rebalance(self, message: Any) -> bool:
        """A rebalance has begun (the flow is suspended) or ended (a newer generation) since
        ``message`` was fetched."""
        app: Any = self.app
        return bool(
            self.suspend_flow.is_set() or message.generation_id != app.consumer_generation_id
        )

    async def _hand_on(self, message: Any) -> None:
        """One record of a topic without a sink, handed on the way Faust does."""
        await self._commit_if_due()
        await self.wait_first(self.callback(message), self.suspend_flow.wait())

    async def _commit_if_due(self) -> None:
        """Faust's ``broker_commit_every``: commit once that many records were acknowledged."""
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()


class _BatchingTransport(faust_aiokafka.Transport):
    Consumer = BatchingConsumer


async def seek_to_committed(app: faust.App, topic: str) -> dict[int, int | None]:
    """Seek ``topic``'s assigned partitions to the group's committed offsets; say what they are
    (None: nothing committed yet). Register, 3."""
    consumer: Any = app.consumer  # Faust's Consumer; ConsumerT lacks seek_to_committed
    committed = await consumer.seek_to_committed()
    return {
        tp.partition: offset if offset is not None and offset >= 0 else None
        for tp, offset in committed.items()
        if tp.topic == topic
    }


def seeker(app: faust.App, topic: str, partition: int) -> Callable[[int], Awaitable[None]]:
    """Read ``partition`` of ``topic`` again from an offset (register, 3)."""
    tp = TP(topic, partition)

    async def seek(offset: int) -> None:
        consumer: Any = app.consumer
        await consumer.seek(tp, offset)

    return seek


def set_stat(table: faust.Table[Any, Any], key: str, value: Any) -> None:
    """Set a stats table entry without the changelog (register, 7)."""
    table.data[key] = value


def stats_of(table: faust.Table[Any, Any]) -> Mapping[str, Any]:
    """The stats table's entries as this worker holds them (register, 7)."""
    return table.data


def transaction_open(producer: AIOKafkaProducer) -> bool:
    """Whether the producer has a transaction ``abort_transaction`` accepts: an open one, or
    one failed abortably (register, 4)."""
    manager = producer._txn_manager  # noqa: SLF001
    return not manager.is_fatal_error() and manager.state in _ABORTABLE


def producer_registered(producer: AIOKafkaProducer) -> Awaitable[Any]:
    """Done once the transactional id is registered: the fencing happened (register, 4)."""
    registered: Awaitable[Any] = producer._txn_manager.wait_for_pid()  # noqa: SLF001
    return registered


async def abandon_producer(producer: AIOKafkaProducer) -> None:
    """Stop a producer without delivering what it holds: cancel its sending task, close its
    connections (register, 9). Not waited for: a cancelled sender waits for its requests in
    flight, which wait for a Kafka that is away; closing the connections ends them."""
    sender = producer._sender  # noqa: SLF001
    task = sender.sender_task if sender is not None else None
    if task is not None and not task.done():
        task.cancel()
        task.add_done_callback(_forget)
    producer._closed = True  # noqa: SLF001 - a later stop() is a no-op
    try:
        await asyncio.wait_for(producer.client.close(), timeout=2)
    except Exception:  # noqa: BLE001 - connections to a Kafka that is away: gone anyway
        pass


def _forget(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned producer's end is nobody's error


async def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Ask the cluster for fresh metadata now (register, 8)."""
    await consumer._client.force_metadata_update()  # noqa: SLF001


def exclude_from_faust_commits(topic: str) -> None:
    """Keep Faust from committing ``topic``'s offsets; only its bookkeeping moves.

    The topic's offsets are committed inside the transactions above. Faust still needs to
    believe they are committed (its ack bookkeeping waits for contiguous commits), so its
    record of committed offsets is updated as if it had committed them itself.
    """
    _excluded.add(topic)
    if _patched:
        return
    _patched.append(True)
    commit_offsets: Callable[..., Coroutine[Any, Any, bool]] = Consumer._commit_offsets  # noqa: SLF001

    async def _commit_offsets(
        self: Consumer, offsets: Mapping[Any, int], start_new_transaction: bool = True
    ) -> bool:
        ours = {tp: offset for tp, offset in offsets.items() if tp.topic in _excluded}
        theirs = {tp: offset for tp, offset in offsets.items() if tp.topic not in _excluded}
        self._committed_offset.update(ours)
        if not theirs:
            return False
        return await commit_offsets(self, theirs, start_new_transaction=start_new_transaction)

    Consumer._commit_offsets = _commit_offsets  # type: ignore[method-assign]  # noqa: SLF001


_excluded: set[str] = set()
_patched: list[bool] = []

# The longest a fetch may wait at the broker for data (Kafka's consumer default is 500 ms).
# A fetch answers as soon as data arrives for a partition it asked for, so an idle worker is
# not slower to notice a request; the bound only caps a fetch that asked for idle partitions.
FETCH_MAX_WAIT_MS = 100


def configure_worker_consumer(ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Make every worker consumer Faust creates wait at most ``ms`` per fetch, and read only
    committed records (register, 5)."""
    if _fetch_wait:
        _fetch_wait[0] = ms
        return
    _fetch_wait.append(ms)
    create: Callable[..., Any] = AIOKafkaConsumerThread._create_worker_consumer  # noqa: SLF001

    def _create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = _fetch_wait[0]  # noqa: SLF001 - read when it starts
        consumer._isolation_level = "read_committed"  # noqa: SLF001 - read when it starts
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]  # noqa: SLF001


_fetch_wait: list[int] = []


def pause_fetching(app: faust.App, tps: Iterable[TP], *, paused: bool) -> None:
    """Stop (or restart) fetching ``tps`` at the Kafka client; the group membership, the
    heartbeats and the positions stay as they are (register, 6)."""
    consumer = app.consumer._thread._ensure_consumer()  # type: ignore[attr-defined]  # noqa: SLF001
    wanted = [TopicPartition(tp.topic, tp.partition) for tp in tps]
    assigned = consumer.assignment()
    wanted = [tp for tp in wanted if tp in assigned]
    if paused:
        consumer.pause(*wanted)
    else:
        consumer.resume(*wanted)
