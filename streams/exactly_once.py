"""Exactly-once publishing: one Kafka transaction per batch of one request partition.

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

Offsets at a partition's end that hold no record (the commit marker of an upstream transactional
producer, aborted records) are never part of a batch, so no batch commits past them: the group's
lag would read 1 for good after every transaction upstream (Kafka's tools say so too, and the
backlog and its ETA never reach 0). ``settle`` commits past them once a read_committed fetch
shows the range holds no record (as Kafka Streams commits its consumer's position, KAFKA-6607).

No hole is committed past (``Positions.claim``, ``PartitionTransactions.claim``): a batch
answers only the run of offsets from the partition's next offset that has no hole. A missing
offset, at the head of a batch or inside it, is either real (a transaction marker of an upstream
transactional producer, an aborted or compacted record: a read_committed fetch of our own
skips it) or a record lost on its way to the lanes: the partition is then read again from it.
The consumer loses records when a rebalance suspends its flow while it is handing a fetch over
(``streams.faust_internals.BatchingConsumer.hand_over`` drops them, as Faust's own loop drops
the record it was handing on, with the read offset already past them); when the partition stays
this worker's, the records fetched after them arrive as usual.

The rest of the house sees this through ``streams.publishers.TransactionalPublisher``; the
internals of Faust and aiokafka it needs are in ``streams.faust_internals`` (items 3 and 4).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import InvalidProducerEpoch, KafkaError, ProducerFenced

from agents.core.offset_ranges import OffsetRanges
from streams.codecs import Send
from streams.faust_internals import abandon_producer, producer_registered, transaction_open
from streams.group_offsets import GroupOffsets
from streams.partition_positions import Positions
from streams.partition_reader import PartitionReader

log = logging.getLogger(__name__)

_RETRY_S = (0.1, 2.0)
_REGISTER_TIMEOUT_S = 20.0
_FENCED = (ProducerFenced, InvalidProducerEpoch)
# The longest the hole guard waits for its fetch from a hole.
HOLE_PROBE_S = 2.0


ProducerFactory = Callable[[str], AIOKafkaProducer]


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
        group_offsets: GroupOffsets | None = None,
    ) -> None:
        self.source_topic = source_topic
        self.group_id = group_id
        self.app_id = app_id
        self._new_producer = new_producer
        self._probe = probe
        # The group's committed offsets, read after a failed transaction (``_committed_after``).
        self._group_offsets = group_offsets
        self.positions = Positions()
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._lock = asyncio.Lock()
        # One transaction at a time per producer: a batch's or a settle's.
        self._in_use: dict[int, asyncio.Lock] = {}
        # Per partition, the next offset from which records were found waiting: nothing to
        # settle there until a batch moves the partition on.
        self._waiting: dict[int, int] = {}
        # Per partition, its next offset at the previous ``settle``.
        self._last_seen: dict[int, int | None] = {}

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
            self._waiting.clear()

    async def publish(
        self, partition: int, epoch: int, sends: Sequence[Send], last_offset: int
    ) -> bool:
        """Commit ``sends`` with the partition's offset ``last_offset + 1``, retrying while
        Kafka is away. False when the partition is no longer this worker's (nothing committed)."""
        delay, ceiling = _RETRY_S
        failed = False
        while True:
            if not self.positions.owns(partition, epoch):
                return False
            producer = self._producers.get(partition) or await self._start(partition)
            if producer is None:
                await asyncio.sleep(delay)
                delay = min(ceiling, delay * 2)
                continue
            if failed and await self._committed_after(partition, epoch, last_offset):
                return True
            try:
                async with self._in_use.setdefault(partition, asyncio.Lock()):
                    return await self._commit(producer, partition, epoch, sends, last_offset)
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
                failed = True
                await asyncio.sleep(delay)
                delay = min(ceiling, delay * 2)

    async def settle(self) -> None:
        """Commit each owned partition past its trailing offsets that hold no record.

        Only a partition that stood still since the previous call is looked at (a flood costs
        nothing), only below the last stable offset (every transaction there has ended), and
        only when a fetch from the partition's next offset reaches that end without a record:
        a record found is the lanes' to answer, and the partition is not looked at again until
        a batch moves it on. Kafka away: tried again at the next call.
        """
        positions = self.positions
        if self._probe is None or not positions.ready:
            return
        epoch = positions.epoch
        due: dict[int, int] = {}
        for p in sorted(positions.owned - positions.fenced):
            start = positions.next.get(p)
            last, self._last_seen[p] = self._last_seen.get(p), start
            # Only a partition that stood still since the last call (no batch committed: under
            # a flood, none is looked at) and that was not found holding records from there.
            if start is not None and last == start and self._waiting.get(p) != start:
                due[p] = start
        if not due:
            return
        try:
            ends = await self._probe.ends(self.source_topic, list(due))
            for partition, start in due.items():
                end = ends.get(partition, start)
                if end <= start:
                    continue
                first = await self._probe.first_record(
                    self.source_topic, partition, start, end, HOLE_PROBE_S
                )
                if first is not None:
                    self._waiting[partition] = start
                    continue
                await self._settle(partition, epoch, start, end)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.info("could not settle the partitions' trailing offsets (%r)", exc)
            await self._probe.stop()  # started afresh next time

    async def _settle(self, partition: int, epoch: int, start: int, end: int) -> None:
        """One transaction of the offset alone: ``[start, end)`` holds no record."""
        async with self._in_use.setdefault(partition, asyncio.Lock()):
            producer = self._producers.get(partition)
            if producer is None or self.positions.next.get(partition) != start:
                return  # a batch moved it meanwhile (or the producer is being replaced)
            try:
                if await self._commit(producer, partition, epoch, [], end - 1):
                    log.info(
                        "partition %d: committed past offsets %d..%d", partition, start, end - 1
                    )
            except _FENCED:
                self.positions.fenced.add(partition)
            except (KafkaError, TimeoutError, OSError) as exc:
                log.info("partition %d: settle failed (%r)", partition, exc)
                await self._abort(producer)
                await self._recover(partition, producer)

    async def stop(self) -> None:
        async with self._lock:
            self.positions.revoke()
            for partition in list(self._producers):
                await self._stop(partition)
        if self._probe is not None:
            await self._probe.stop()
        if self._group_offsets is not None:
            await self._group_offsets.close()

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
        if after == start:
            log.info(
                "partition %d: no record came from offset %d in %g s",
                partition,
                start,
                HOLE_PROBE_S,
            )
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
            # The records acknowledged first, then the offset sent, never both in flight: the
            # broker checks each with the transaction coordinator (KIP-890), and with both checks
            # of one transactional id pending it refused the records (NOT_ENOUGH_REPLICAS) in
            # about one idle transaction in six; aiokafka sent them again after its 100 ms retry
            # backoff (README, "How it works"; the broker's request log showed it).
            await asyncio.gather(*futures)
            await producer.send_offsets_to_transaction(
                {TopicPartition(self.source_topic, partition): last_offset + 1}, self.group_id
            )
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
        if not transaction_open(producer):
            return
        try:
            await producer.abort_transaction()
        except KafkaError as exc:
            log.info("abort failed (%r); the next transaction's start settles it", exc)

    async def _recover(self, partition: int, producer: AIOKafkaProducer) -> None:
        """After a failed transaction, close the partition's producer: the next attempt
        registers its transactional id again (``_start``).

        The failure's outcome is unknown (a commit that timed out may have committed; a send
        may still be in flight). aiokafka speaks the oldest versions of Kafka's transaction
        requests, which have known gaps (Jepsen's analysis of Kafka transactions, 2024; KIP-890
        closes them only for newer clients): a delayed request of the old transaction can land
        in the next one under the same epoch. A new registration bumps the epoch, so the broker
        fences whatever the old producer left in flight, and it finishes the old transaction
        before it answers. A producer in a fatal state had to be replaced anyway."""
        async with self._lock:
            if self._producers.get(partition) is producer:
                del self._producers[partition]
                log.info("partition %d: producer closed; its id is registered again", partition)
                await abandon_producer(producer)

    async def _committed_after(self, partition: int, epoch: int, last_offset: int) -> bool:
        """After a failed transaction and the id's new registration: whether the failed one
        committed after all (a commit that timed out at the client but reached the
        coordinator). The registration has ended it, committed or aborted, so the group's
        offset now says which; if it is past the batch, its answers are on the topics and
        sending them again would answer every record of the batch twice. When the offset
        cannot be read, the batch is sent again (a duplicate is found by the answer audit; a
        batch never sent would be a loss)."""
        if self._group_offsets is None:
            return False
        try:
            offset = (await self._group_offsets.committed()).get(partition)
        except Exception as exc:  # noqa: BLE001 - Kafka away: send again, as before
            log.info("partition %d: committed offset not readable (%r)", partition, exc)
            return False
        if offset is None or offset <= last_offset:
            return False
        async with self._lock:
            if epoch != self.positions.epoch:
                return False
            self.positions.next[partition] = max(self.positions.next.get(partition) or 0, offset)
        log.warning(
            "partition %d: the transaction that failed had committed (the group is at %d): "
            "its answers are not sent again",
            partition,
            offset,
        )
        return True

    async def _start(self, partition: int) -> AIOKafkaProducer | None:
        """Start the partition's producer: its first request fences the previous owner's."""
        producer = self._new_producer(self.transactional_id(partition))
        try:
            await producer.start()
            await asyncio.wait_for(
                asyncio.shield(producer_registered(producer)),
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
