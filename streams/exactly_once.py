"""Exactly-once publishing, and every use of Faust's and aiokafka's internals, in one place.

A batch's outcomes, dead letters and the request partition's next offset commit together in one
transaction of a producer whose transactional id is tied to that partition
(``<app id>-migrate-<partition>``). That gives, without Faust's own exactly-once machinery:

- zombie fencing: a worker that is assigned a partition starts its producer, which fences the
  previous owner's producer and settles whatever it left open, before the committed offset is
  read. A worker that finds itself fenced drops the partition's records until the group gives
  it partitions again, and carries on;
- no transaction spans two batches, so a rebalance never finds outputs waiting for offsets;
- offsets of the request topic are committed only here (a late plain commit from Faust could
  otherwise move the group's position back over published outcomes).

A rebalance bumps ``epoch`` before Faust waits for in-flight records; a batch commits only if the
epoch it started in is still current (checked under the lock the rebalance takes), so nothing is
committed for a partition after its revocation began. Records dropped that way are read again
from the committed offset by the partition's next owner (maybe this worker), and PostgreSQL
answers them with the answers it already recorded (``processed_records``).

No hole is committed past (``Positions.claim``, ``PartitionTransactions.claim``): a batch
answers only the run of offsets from the partition's next offset that has no hole. A missing
offset, at the head of a batch or inside it, is either real (a transaction marker of an upstream
transactional producer, an aborted or compacted record: a read_committed fetch of our own
skips it) or a record lost inside the stream: the partition is then read again from it. Faust
loses one when a rebalance suspends its flow while it is handing the record on (faust-streaming
0.15.3 ``Consumer._drain_messages``: ``wait_first(callback(message), suspend_flow.wait())``
cancels the hand-over, then ``set_read_offset`` marks the record read anyway), and the records
fetched after it arrive as usual.

Register of internals (checked against faust-streaming 0.15.3 and aiokafka 0.14.0; the canary
``tests/streams/test_exactly_once.py::test_the_internals_we_rely_on_are_there`` fails on a version
where a name is gone, and ``pyproject.toml`` caps both below their next minor version):

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
   mid-send) or the producer must be replaced. Proven by the fault test and
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
   ``tests/unit/test_exactly_once.py::test_fetches_wait_at_most_the_bound`` and the half-load
   figure of ``make bench``.
6. aiokafka ``AIOKafkaConsumer.pause`` / ``resume`` on the consumer Faust's driver holds
   (``Consumer._thread._ensure_consumer()``), for run control's pause (``pause_fetching``).
   Corrects: Faust's own ``pause_partitions`` only filters what its fetch loop hands on, and a
   fetch already under way when a partition is paused loses its records for that partition
   (Faust skips them, aiokafka's position has moved past them): a gap after every resume.
   aiokafka's pause leaves the position where delivery stopped and drops the undelivered
   fetch, so the resume reads on from exactly there. Proven by
   ``tests/e2e/test_run_control.py`` (a pause during a flood: every request answered once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import InvalidProducerEpoch, KafkaError, ProducerFenced
from aiokafka.producer.transaction_manager import TransactionState
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from agents.core.offset_ranges import OffsetRanges
from streams.partition_reader import PartitionReader

log = logging.getLogger(__name__)

_RETRY_S = (0.1, 2.0)
_REGISTER_TIMEOUT_S = 20.0
_FENCED = (ProducerFenced, InvalidProducerEpoch)
# The longest the hole guard waits for its fetch from a hole.
HOLE_PROBE_S = 2.0


@dataclass(frozen=True)
class Send:
    """One record for the transaction: topic, key, value, headers."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True)
class Claim:
    """What a batch of one partition may answer: ``offsets``, the run that starts at the
    partition's next offset and has no hole (but holes proven empty); ``hole``, the first
    offsets ``[start, end)`` missing after that run and not proven empty, if any."""

    offsets: list[int]
    hole: tuple[int, int] | None = None


# A partition read again from a hole is not sent back there again for this long: records
# buffered before the seek are still arriving, and they show the same hole.
RESEEK_AFTER_S = 5.0


class Positions:
    """Which request partitions a batch may still publish for, and from which offset: pure.

    ``epoch`` changes when a rebalance begins; a batch publishes only in the epoch it began in.
    ``next`` is each partition's first offset not yet covered by a committed transaction.
    ``empty`` holds, per partition, the offsets proven to hold no record a read_committed
    consumer is given (transaction markers, aborted or compacted records): holes there are real.
    """

    def __init__(self) -> None:
        self.epoch = 0
        self.ready = False
        self.owned: set[int] = set()
        self.fenced: set[int] = set()
        self.next: dict[int, int | None] = {}
        self.empty: dict[int, OffsetRanges] = {}
        self._sought: dict[int, tuple[int, float]] = {}

    def revoke(self) -> None:
        self.epoch += 1
        self.ready = False

    def assign(self, partitions: set[int], committed: Mapping[int, int | None]) -> None:
        self.owned = set(partitions)
        self.fenced.clear()
        self._sought.clear()
        self.next = {p: committed.get(p) for p in partitions}
        self.empty = {p: ranges for p, ranges in self.empty.items() if p in partitions}
        self.ready = True

    def owns(self, partition: int, epoch: int) -> bool:
        """Whether a batch begun in ``epoch`` may still publish for ``partition``."""
        return (
            self.ready
            and epoch == self.epoch
            and partition in self.owned
            and partition not in self.fenced
        )

    def claim(self, partition: int, offsets: Iterable[int]) -> Claim:
        """The offsets of a batch to answer now, and the first hole that stops them.

        Offsets below ``next`` are stale copies still buffered from before a seek (their answers
        are on the topics already) and are left out. From ``next`` on, offsets are taken while
        each follows the previous one, or follows it across offsets proven empty; the first
        missing offset not proven empty ends the run, whether it is at the head of the batch or
        in its middle. Nothing after a hole is answered: its offset would be committed with it.
        """
        start = self.next.get(partition)
        ordered = sorted({o for o in offsets if start is None or o >= start})
        if not ordered:
            return Claim([])
        empty = self.empty.get(partition)
        if empty is not None and start is not None:
            empty.discard_below(start)
        expected = ordered[0] if start is None else start
        run: list[int] = []
        for offset in ordered:
            if offset != expected:
                unproven = empty.missing(expected, offset) if empty else [(expected, offset)]
                if unproven:
                    return Claim(run, (unproven[0][0], offset))
            run.append(offset)
            expected = offset + 1
        return Claim(run)

    def prove_empty(self, partition: int, ranges: Iterable[tuple[int, int]]) -> None:
        """Record offsets a read_committed fetch skipped: no record there will ever arrive."""
        known = self.empty.setdefault(partition, OffsetRanges())
        for start, end in ranges:
            known.add_range(start, end)

    def seek_due(self, partition: int, offset: int, now: float) -> bool:
        """Whether to read ``partition`` again from ``offset`` now: not if it was sent there
        less than ``RESEEK_AFTER_S`` ago (the records read again are still on their way)."""
        sought = self._sought.get(partition)
        if sought is not None and sought[0] == offset and now - sought[1] < RESEEK_AFTER_S:
            return False
        self._sought[partition] = (offset, now)
        return True


ProducerFactory = Callable[[str], AIOKafkaProducer]
# Transaction states ``abort_transaction`` accepts (an open transaction, or one failed abortably).
_ABORTABLE = (TransactionState.IN_TRANSACTION, TransactionState.ABORTABLE_ERROR)


class PartitionTransactions:
    """The transactional producers of the request partitions this worker owns."""

    def __init__(
        self,
        *,
        source_topic: str,
        group_id: str,
        app_id: str,
        new_producer: ProducerFactory,
        probe: PartitionReader | None = None,
    ) -> None:
        self.source_topic = source_topic
        self.group_id = group_id
        self.app_id = app_id
        self._new_producer = new_producer
        self._probe = probe
        self.positions = Positions()
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._lock = asyncio.Lock()

    @property
    def epoch(self) -> int:
        return self.positions.epoch

    def transactional_id(self, partition: int) -> str:
        return f"{self.app_id}-migrate-{partition}"

    async def on_revocation_start(self) -> None:
        """Called before Faust waits for in-flight records: no commit after this one."""
        async with self._lock:
            self.positions.revoke()

    async def on_assigned(
        self,
        partitions: set[int],
        read_committed: Callable[[], Coroutine[Any, Any, Mapping[int, int | None]]],
    ) -> None:
        """Start a producer per assigned partition, then read where each partition stands.

        Every producer is started afresh, kept partitions too (the group may have given one to
        another worker and back in between): starting registers the transactional id, which
        fences any earlier holder and settles its open transaction, committed or aborted. Only
        then are the committed offsets read, so no zombie can move them afterwards.
        """
        async with self._lock:
            for partition in list(self._producers):
                await self._stop(partition)
            started = await asyncio.gather(*(self._start_patiently(p) for p in partitions))
            if not all(started):
                raise RuntimeError("Kafka did not register the partitions' transactional ids")
            self.positions.assign(partitions, await read_committed())

    async def publish(
        self, partition: int, epoch: int, sends: Sequence[Send], last_offset: int
    ) -> bool:
        """Commit ``sends`` with the partition's offset ``last_offset + 1``, retrying while
        Kafka is away. False when the partition is no longer this worker's (nothing committed)."""
        delay, ceiling = _RETRY_S
        while True:
            if not self.positions.owns(partition, epoch):
                return False
            producer = self._producers.get(partition) or await self._start(partition)
            if producer is None:
                await asyncio.sleep(delay)
                delay = min(ceiling, delay * 2)
                continue
            try:
                if await self._commit(producer, partition, epoch, sends, last_offset):
                    return True
                return False
            except _FENCED as exc:
                log.warning(
                    "partition %d: producer fenced (%s); another worker owns it now", partition, exc
                )
                self.positions.fenced.add(partition)
                return False
            except (KafkaError, TimeoutError, OSError) as exc:
                log.warning("partition %d: transaction failed (%r); trying again", partition, exc)
                # A failed commit leaves the transaction abortable: end it before the next one.
                await self._abort(producer)
                await self._recover(partition, producer)
                await asyncio.sleep(delay)
                delay = min(ceiling, delay * 2)

    async def stop(self) -> None:
        async with self._lock:
            self.positions.revoke()
            for partition in list(self._producers):
                await self._stop(partition)
        if self._probe is not None:
            await self._probe.stop()

    async def claim(
        self, partition: int, offsets: Sequence[int], seek: Callable[[int], Awaitable[None]]
    ) -> list[int]:
        """The offsets of a batch to answer: the run from the partition's next offset that has
        no hole, where a hole is an offset with no record that Kafka did not prove empty.

        A hole is looked at once with a fetch of its own (``HOLE_PROBE_S`` at most): offsets
        the broker skips for a read_committed consumer (transaction markers, aborted or
        compacted records) are empty for good and passed over. A hole holding records, or one
        the probe could not look at, is a record lost inside the stream: the partition is read
        again from it (``seek``), and only the run before it is answered now.
        """
        positions = self.positions
        present: set[int] = set()
        looked: set[int] = set()
        while True:
            claim = positions.claim(partition, offsets)
            if claim.hole is None:
                return claim.offsets
            start, end = claim.hole
            if start not in present and start not in looked:
                # What the look proves empty extends the run; what it finds is a lost record.
                looked.add(start)
                present.update(await self._look(partition, start))
                continue
            if positions.seek_due(partition, start, asyncio.get_running_loop().time()):
                log.warning(
                    "records %d..%d of partition %d did not arrive: reading them again",
                    start,
                    end - 1,
                    partition,
                )
                await seek(start)
            return claim.offsets

    async def _look(self, partition: int, start: int) -> list[int]:
        """Fetch from ``start``: the offsets the fetch skipped are recorded as empty; the
        offsets of the records it returned are returned (none when it could not look)."""
        if self._probe is None:
            return []
        try:
            found, after = await self._probe.first_fetch(
                self.source_topic, partition, start, HOLE_PROBE_S
            )
        except (KafkaError, OSError, TimeoutError) as exc:
            log.info("partition %d: could not look at offset %d (%r)", partition, start, exc)
            await self._probe.stop()  # started afresh by the next look
            return []
        self.positions.prove_empty(
            partition, OffsetRanges((o, o + 1) for o in found).missing(start, after)
        )
        return found

    async def _commit(
        self,
        producer: AIOKafkaProducer,
        partition: int,
        epoch: int,
        sends: Sequence[Send],
        last_offset: int,
    ) -> bool:
        await producer.begin_transaction()
        futures: list[asyncio.Future[Any]] = []
        try:
            for send in sends:
                futures.append(
                    await producer.send(
                        send.topic,
                        send.value,
                        key=send.key,
                        partition=partition,
                        headers=list(send.headers),
                    )
                )
            await producer.send_offsets_to_transaction(
                {TopicPartition(self.source_topic, partition): last_offset + 1}, self.group_id
            )
            await asyncio.gather(*futures)
        except BaseException:
            # The sends already queued fail with the transaction: collect their errors.
            await asyncio.gather(*futures, return_exceptions=True)
            await self._abort(producer)
            raise
        async with self._lock:
            current = epoch == self.positions.epoch
            if current:
                await producer.commit_transaction()
                self.positions.next[partition] = last_offset + 1
        if not current:
            await self._abort(producer)
        return current

    async def _abort(self, producer: AIOKafkaProducer) -> None:
        """End the open transaction, if one is open: a failed send has already aborted it once
        (``_commit``), and aborting a producer with none open is an assertion, not an error."""
        manager = producer._txn_manager  # noqa: SLF001 - register item 4
        if manager.is_fatal_error() or manager.state not in _ABORTABLE:
            return
        try:
            await producer.abort_transaction()
        except KafkaError as exc:
            log.info("abort failed (%r); the next transaction's start settles it", exc)

    async def _recover(self, partition: int, producer: AIOKafkaProducer) -> None:
        """After a failed transaction: a producer in a fatal (non-fencing) state is replaced."""
        if not producer._txn_manager.is_fatal_error():  # noqa: SLF001
            return
        async with self._lock:
            if self._producers.get(partition) is producer:
                await self._stop(partition)

    async def _start(self, partition: int) -> AIOKafkaProducer | None:
        """Start the partition's producer: its first request fences the previous owner's."""
        producer = self._new_producer(self.transactional_id(partition))
        try:
            await producer.start()
            await asyncio.wait_for(
                asyncio.shield(producer._txn_manager.wait_for_pid()),  # noqa: SLF001
                timeout=_REGISTER_TIMEOUT_S,
            )
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("partition %d: producer did not start (%r); trying again", partition, exc)
            await producer.stop()
            return None
        self._producers[partition] = producer
        return producer

    async def _start_patiently(self, partition: int) -> bool:
        deadline = asyncio.get_running_loop().time() + _REGISTER_TIMEOUT_S
        delay, ceiling = _RETRY_S
        while await self._start(partition) is None:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(ceiling, delay * 2)
        return True

    async def _stop(self, partition: int) -> None:
        producer = self._producers.pop(partition, None)
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.stop(), timeout=10)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.info("partition %d: producer stop: %r", partition, exc)


class MigratorApp(faust.App):
    """Faust's app, telling the per-partition transactions about a rebalance before Faust acts.

    The revocation must be known before Faust waits for in-flight records (a batch that sees it
    stops instead of committing), and the assignment must register the partitions'
    transactional ids before anything is read from them.
    """

    transactions: PartitionTransactions | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Called once Faust has taken an assignment in (run control re-pauses partitions).
        self.assignment_listeners: list[Callable[[], None]] = []

    async def _on_partitions_revoked(self, revoked: set[TP]) -> None:
        if self.transactions is not None:
            await self.transactions.on_revocation_start()
        await super()._on_partitions_revoked(revoked)

    async def _on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        transactions = self.transactions
        if transactions is not None and not self.should_stop:
            mine = {tp.partition for tp in assigned if tp.topic == transactions.source_topic}
            try:
                await transactions.on_assigned(mine, self._committed_positions)
            except Exception as exc:  # noqa: BLE001 - Kafka refused; a crash is the last resort
                await self.crash(exc)
                return
        await super()._on_partitions_assigned(assigned, generation_id)
        for listener in self.assignment_listeners:
            listener()

    async def _committed_positions(self) -> dict[int, int | None]:
        """Seek the request partitions to their committed offsets and say what they are."""
        assert self.transactions is not None
        consumer: Any = self.consumer  # Faust's Consumer; ConsumerT lacks seek_to_committed
        committed = await consumer.seek_to_committed()
        return {
            tp.partition: offset if offset is not None and offset >= 0 else None
            for tp, offset in committed.items()
            if tp.topic == self.transactions.source_topic
        }


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
