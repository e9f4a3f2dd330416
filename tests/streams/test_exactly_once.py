"""The rules that decide which records a batch may publish: pure bookkeeping, no Kafka.

Publishing itself runs against the real broker in the end-to-end tests (SIGKILL, rebalance,
fault run); these tests pin the decisions taken before any transaction begins.
"""

from __future__ import annotations

from typing import Any

import pytest

from streams.exactly_once import PartitionTransactions
from streams.partition_positions import RESEEK_AFTER_S, Claim, Positions


def assigned(partitions: set[int], committed: dict[int, int | None]) -> Positions:
    positions = Positions()
    positions.assign(partitions, committed)
    return positions


def test_only_assigned_partitions_are_published_for() -> None:
    positions = assigned({0, 2}, {0: 10, 2: None})
    epoch = positions.epoch
    assert positions.owns(0, epoch) and positions.owns(2, epoch) and not positions.owns(1, epoch)


def test_a_revocation_ends_every_batch_begun_before_it() -> None:
    positions = assigned({0}, {0: 10})
    epoch = positions.epoch
    positions.revoke()
    assert not positions.owns(0, epoch)
    assert not positions.owns(0, positions.epoch)  # nor new batches, until the assignment
    positions.assign({0}, {0: 12})
    assert positions.owns(0, positions.epoch) and not positions.owns(0, epoch)


def test_a_fenced_partition_is_dropped_until_the_next_assignment() -> None:
    positions = assigned({0, 1}, {})
    positions.fenced.add(0)
    assert not positions.owns(0, positions.epoch) and positions.owns(1, positions.epoch)
    positions.revoke()
    positions.assign({0, 1}, {})
    assert positions.owns(0, positions.epoch)


def test_records_below_the_committed_offset_are_stale_copies() -> None:
    positions = assigned({0, 1}, {0: 100, 1: None})
    assert positions.claim(0, [98, 99, 100, 101]).offsets == [100, 101]
    assert positions.claim(1, [0, 1]).offsets == [0, 1]  # nothing committed yet: all of them
    positions.next[0] = 102  # a transaction committed through offset 101
    assert positions.claim(0, [100, 101, 102]) == Claim([102])


def test_a_hole_at_the_head_answers_nothing_and_names_the_missing_offsets() -> None:
    positions = assigned({0}, {0: 100})
    assert positions.claim(0, [105, 106]) == Claim([], (100, 105))


def test_a_hole_inside_a_batch_answers_only_the_run_before_it() -> None:
    # The fault run's loss: 363 and 365-375 arrived in one batch, 364 did not.
    positions = assigned({1}, {1: 363})
    assert positions.claim(1, [363, *range(365, 376)]) == Claim([363], (364, 365))
    # Duplicated copies and disorder change nothing.
    assert positions.claim(1, [366, 363, 365, 363]) == Claim([363], (364, 365))


def test_only_the_first_hole_counts_and_the_run_stops_there() -> None:
    positions = assigned({0}, {0: 10})
    assert positions.claim(0, [10, 11, 13, 14, 16]) == Claim([10, 11], (12, 13))


def test_holes_proven_empty_are_passed_over_and_others_still_stop_the_run() -> None:
    positions = assigned({0}, {0: 10})
    positions.prove_empty(0, [(12, 13)])  # a transaction marker
    assert positions.claim(0, [10, 11, 13, 14, 16]) == Claim([10, 11, 13, 14], (15, 16))
    positions.prove_empty(0, [(15, 16)])
    assert positions.claim(0, [10, 11, 13, 14, 16]) == Claim([10, 11, 13, 14, 16])
    # A head hole proven empty too (the markers right after the committed offset).
    positions.next[0] = 17
    positions.prove_empty(0, [(17, 19)])
    assert positions.claim(0, [19, 20]) == Claim([19, 20])


def test_a_partly_proven_hole_is_still_a_hole_from_its_first_unproven_offset() -> None:
    positions = assigned({0}, {0: 10})
    positions.prove_empty(0, [(10, 12)])
    assert positions.claim(0, [13]) == Claim([], (12, 13))
    # A marker, then a lost record: the partition is read again from the record, not the marker.
    positions.prove_empty(0, [(14, 15)])
    assert positions.claim(0, [12, 13, 16]) == Claim([12, 13], (15, 16))


def test_a_partition_is_sent_back_to_a_hole_once_while_its_records_are_read_again() -> None:
    positions = assigned({0}, {0: 10})
    assert positions.seek_due(0, 12, now=100.0)
    assert not positions.seek_due(0, 12, now=101.0)  # stale copies still show the hole
    assert positions.seek_due(0, 13, now=101.0)  # another hole
    assert positions.seek_due(0, 13, now=101.0 + RESEEK_AFTER_S)  # the re-read lost it again
    positions.revoke()
    positions.assign({0}, {0: 10})
    assert positions.seek_due(0, 13, now=102.0)  # a new assignment starts afresh


class Probe:
    """Stands in for the read_committed fetch: ``records`` are the partition's record offsets."""

    def __init__(self, records: list[int] | None) -> None:
        self.records = records
        self.fetches: list[int] = []

    async def first_fetch(
        self, topic: str, partition: int, start: int, timeout_s: float
    ) -> tuple[list[int], int]:
        self.fetches.append(start)
        if self.records is None:
            raise TimeoutError("Kafka away")
        found = [o for o in self.records if o >= start][:4]
        return found, (found[-1] + 1 if found else start)

    async def stop(self) -> None:
        pass


def guarded(probe: Probe, committed: int) -> tuple[PartitionTransactions, list[int]]:
    transactions = PartitionTransactions(
        source_topic="requests",
        group_id="g",
        app_id="a",
        new_producer=lambda _: None,  # type: ignore[arg-type,return-value]
        probe=probe,  # type: ignore[arg-type]
    )
    transactions.positions.assign({0}, {0: committed})
    return transactions, []


async def test_a_record_lost_inside_a_batch_sends_the_partition_back_to_it() -> None:
    probe = Probe([10, 11, 12, 13, 14])
    transactions, seeks = guarded(probe, 10)

    async def seek(offset: int) -> None:
        seeks.append(offset)

    assert await transactions.claim(0, [10, 11, 13, 14], seek) == [10, 11]
    assert seeks == [12] and probe.fetches == [12]
    # Copies buffered before the seek show the same hole: no second seek, nothing answered.
    transactions.positions.next[0] = 12
    assert await transactions.claim(0, [13, 14], seek) == []
    assert seeks == [12]
    # The records read again arrive with the lost one.
    assert await transactions.claim(0, [12, 13, 14], seek) == [12, 13, 14]


async def test_markers_inside_a_batch_are_proven_empty_and_do_not_stall_it() -> None:
    # Requests from a transactional producer: a commit marker after every three records.
    probe = Probe([10, 11, 12, 14, 15, 16, 18, 19])
    transactions, seeks = guarded(probe, 10)

    async def seek(offset: int) -> None:
        seeks.append(offset)

    assert await transactions.claim(0, [10, 11, 12, 14, 15, 16, 18, 19], seek) == [
        10,
        11,
        12,
        14,
        15,
        16,
        18,
        19,
    ]
    assert seeks == []
    # One fetch proved both markers: it returned 14-16 and 18, skipping 13 and 17.
    assert probe.fetches == [13]


async def test_a_hole_that_cannot_be_looked_at_is_read_again_never_passed_over() -> None:
    transactions, seeks = guarded(Probe(None), 10)

    async def seek(offset: int) -> None:
        seeks.append(offset)

    assert await transactions.claim(0, [10, 12], seek) == [10]
    assert seeks == [11]


@pytest.mark.parametrize("first", [90, 100])
def test_no_hole_when_the_batch_starts_at_or_before_the_committed_offset(first: int) -> None:
    positions = assigned({0}, {0: 100})
    assert positions.claim(0, [first, 100, 101]) == Claim([100, 101])


def test_nothing_committed_yet_starts_at_the_first_record_and_still_finds_inner_holes() -> None:
    positions = assigned({0}, {0: None})
    assert positions.claim(0, [57, 58, 60]) == Claim([57, 58], (59, 60))


async def test_a_transaction_is_aborted_once() -> None:
    """A send that fails aborts the transaction in ``_commit``; the retry loop's abort must then
    see none open and do nothing (aborting twice asserts and crashed the agent in a fault run)."""
    from aiokafka.producer.transaction_manager import TransactionManager

    manager = TransactionManager("migrate-0", 60_000)
    manager.set_pid_and_epoch(1, 0)  # UNINITIALIZED -> READY, as after the producer's start

    class Producer:
        _txn_manager = manager
        aborts = 0

        async def abort_transaction(self) -> None:
            manager.aborting_transaction()  # asserts unless a transaction is open
            manager.complete_transaction()
            Producer.aborts += 1

    transactions = PartitionTransactions(
        source_topic="requests", group_id="g", app_id="a", new_producer=lambda _: None
    )
    producer: Any = Producer()
    await transactions._abort(producer)  # nothing open: nothing to do
    manager.begin_transaction()
    await transactions._abort(producer)
    await transactions._abort(producer)  # already aborted
    assert Producer.aborts == 1


async def test_a_marker_then_a_lost_record_reads_again_from_the_record() -> None:
    probe = Probe([10, 11, 12, 14, 15])  # 13: a transaction marker; 14 lost in the stream
    transactions, seeks = guarded(probe, 10)

    async def seek(offset: int) -> None:
        seeks.append(offset)

    assert await transactions.claim(0, [10, 11, 12, 15], seek) == [10, 11, 12]
    assert seeks == [14] and probe.fetches == [13]


class _Probe:
    """Stands in for the read_committed reader: the partitions' ends and what a fetch finds."""

    def __init__(self, ends: dict[int, int], records: dict[int, int | None]) -> None:
        self.end, self.records, self.fetches = ends, records, 0

    async def ends(self, topic: str, partitions: list[int]) -> dict[int, int]:
        return {p: self.end[p] for p in partitions}

    async def first_record(
        self, topic: str, partition: int, start: int, end: int, timeout_s: float
    ) -> int | None:
        self.fetches += 1
        return self.records.get(partition)

    async def stop(self) -> None:
        return None


class _Producer:
    def __init__(self) -> None:
        self.committed: list[dict[Any, int]] = []

    async def begin_transaction(self) -> None:
        return None

    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group: str) -> None:
        self.committed.append(offsets)

    async def commit_transaction(self) -> None:
        return None


async def test_a_quiet_partition_is_committed_past_trailing_markers_and_only_then() -> None:
    probe = _Probe({0: 12, 1: 50}, {0: None, 1: 45})
    transactions = PartitionTransactions(
        source_topic="requests",
        group_id="g",
        app_id="a",
        new_producer=lambda _: None,  # type: ignore[arg-type,return-value]
        probe=probe,  # type: ignore[arg-type]
    )
    producer = _Producer()
    transactions._producers = {0: producer, 1: _Producer()}  # type: ignore[dict-item]
    transactions.positions.assign({0, 1}, {0: 10, 1: 40})
    await transactions.settle()  # first sight: they may be moving, nothing is looked at
    assert probe.fetches == 0
    await transactions.settle()
    # Partition 0 holds only markers from 10 to 12: committed past them, next is 12. Partition 1
    # holds a record at 45: the lane's to answer, nothing committed, not looked at again.
    assert [{tp.partition: o for tp, o in c.items()} for c in producer.committed] == [{0: 12}]
    assert transactions.positions.next == {0: 12, 1: 40}
    fetched = probe.fetches
    await transactions.settle()
    await transactions.settle()
    assert probe.fetches == fetched  # 0 is at its end, 1 waits for a batch to move it


async def test_a_failed_commit_closes_the_producer_and_registers_the_id_again() -> None:
    """A commit whose outcome is unknown (timed out) must not be retried on the same producer:
    the next attempt registers the transactional id anew (a new epoch fences the old one's
    requests still in flight), then publishes."""
    from aiokafka.errors import KafkaTimeoutError
    from aiokafka.producer.transaction_manager import TransactionManager

    made: list[Any] = []

    class Client:
        async def close(self) -> None:
            pass

    class Producer:
        _sender = None
        _closed = False
        client = Client()

        def __init__(self, fail_commit: bool) -> None:
            self._txn_manager = TransactionManager("a-migrate-0", 60_000)
            self.fail_commit = fail_commit
            self.commits = 0

        async def start(self) -> None:
            self._txn_manager.set_pid_and_epoch(1, len(made))

        async def stop(self) -> None:
            pass

        async def begin_transaction(self) -> None:
            self._txn_manager.begin_transaction()

        async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
            pass

        async def commit_transaction(self) -> None:
            if self.fail_commit:
                raise KafkaTimeoutError("commit timed out")
            self.commits += 1
            self._txn_manager.committing_transaction()
            self._txn_manager.complete_transaction()

        async def abort_transaction(self) -> None:
            self._txn_manager.aborting_transaction()
            self._txn_manager.complete_transaction()

    def new_producer(transactional_id: str) -> Any:
        producer = Producer(fail_commit=not made)
        made.append(producer)
        return producer

    class Offsets:
        """The group's committed offsets as Kafka says after the new registration."""

        def __init__(self, committed: dict[int, int]) -> None:
            self.now, self.reads = committed, 0

        async def committed(self) -> dict[int, int]:
            self.reads += 1
            return self.now

        async def close(self) -> None:
            pass

    def at_30(offsets: Offsets) -> PartitionTransactions:
        """The partition owned from offset 30, the group's offsets read from ``offsets``."""
        transactions = PartitionTransactions(
            source_topic="requests",
            group_id="g",
            app_id="a",
            new_producer=new_producer,
            group_offsets=offsets,  # type: ignore[arg-type]
        )
        transactions.positions.assign({0}, {0: 30})
        return transactions

    # The failed commit did not reach the coordinator: the group is still below the batch.
    offsets = Offsets({0: 30})
    transactions = at_30(offsets)
    assert await transactions.publish(0, transactions.epoch, [], 41)
    assert len(made) == 2, "the producer whose commit failed was used again"
    assert made[0]._closed and not made[1]._closed
    assert made[1].commits == 1 and offsets.reads == 1
    assert transactions.positions.next[0] == 42

    # It did (the client timed out, the coordinator committed): the batch is not sent again.
    made.clear()
    transactions = at_30(Offsets({0: 42}))
    assert await transactions.publish(0, transactions.epoch, [], 41)
    assert len(made) == 2 and made[1].commits == 0, "the committed batch was sent again"
    assert transactions.positions.next[0] == 42
