"""The rules that decide which records a batch may publish: pure bookkeeping, no Kafka.

Publishing itself runs against the real broker in the end-to-end tests (SIGKILL, rebalance,
fault run); these tests pin the decisions taken before any transaction begins.
"""

from __future__ import annotations

from typing import Any

import pytest

from streams.exactly_once import PartitionTransactions, Positions


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
    assert positions.unpublished(0, [98, 99, 100, 101]) == [100, 101]
    assert positions.unpublished(1, [0, 1]) == [0, 1]  # nothing committed yet: all of them
    positions.next[0] = 102  # a transaction committed through offset 101
    assert positions.unpublished(0, [100, 101, 102]) == [102]


def test_a_gap_is_read_again_once_then_accepted_when_it_is_real() -> None:
    positions = assigned({0}, {0: 100})
    assert positions.gap_before(0, 105) == 100  # first sight: seek back and read again
    assert positions.gap_before(0, 105) is None  # same gap after the re-read: markers, accept


def test_a_different_gap_after_the_re_read_is_read_again_too() -> None:
    positions = assigned({0}, {0: 100})
    assert positions.gap_before(0, 105) == 100
    assert positions.gap_before(0, 103) == 100


@pytest.mark.parametrize("first", [90, 100])
def test_no_gap_when_the_batch_starts_at_or_before_the_committed_offset(first: int) -> None:
    positions = assigned({0}, {0: 100})
    assert positions.gap_before(0, first) is None


def test_no_gap_check_before_anything_was_committed() -> None:
    positions = assigned({0}, {0: None})
    assert positions.gap_before(0, 57) is None


def test_the_internals_we_rely_on_are_there() -> None:
    """A canary: streams/exactly_once.py's register names these; a Faust or aiokafka release
    that renames or drops one must fail here, with the name, not in production."""
    import inspect

    import aiokafka
    import faust
    from aiokafka.producer.transaction_manager import TransactionManager, TransactionState
    from faust.transport.consumer import Consumer

    checked = {"faust": "0.15.", "aiokafka": "0.14."}
    for module, prefix in ((faust, checked["faust"]), (aiokafka, checked["aiokafka"])):
        assert module.__version__.startswith(prefix), (
            f"{module.__name__} {module.__version__}: streams/exactly_once.py was checked "
            f"against {prefix}x only; re-check its register, then this test"
        )
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    needed = {
        AIOKafkaConsumerThread: ("_create_worker_consumer", "_ensure_consumer"),
        aiokafka.AIOKafkaConsumer: ("pause", "resume", "assignment"),
        faust.App: ("_on_partitions_revoked", "_on_partitions_assigned"),
        Consumer: ("_commit_offsets", "seek_to_committed", "seek"),
        TransactionManager: ("wait_for_pid", "is_fatal_error", "begin_transaction"),
    }
    for owner, names in needed.items():
        for name in names:
            assert callable(getattr(owner, name, None)), f"{owner.__name__}.{name} is gone"
    assert "self.state = TransactionState.UNINITIALIZED" in inspect.getsource(TransactionManager)
    assert {"IN_TRANSACTION", "ABORTABLE_ERROR"} <= set(TransactionState.__members__)
    assert "_committed_offset" in inspect.getsource(Consumer.__init__), (
        "Consumer._committed_offset is gone"
    )
    parameters = inspect.signature(Consumer._commit_offsets).parameters
    assert list(parameters)[:3] == ["self", "offsets", "start_new_transaction"], parameters
    revoked = inspect.getsource(faust.App._on_partitions_revoked)
    # The reason for the override: Faust waits for in-flight records before its signal.
    assert revoked.index("_consumer_wait_empty") < revoked.index("on_partitions_revoked.send")


async def test_fetches_wait_at_most_the_bound() -> None:
    """Faust's worker consumer waits 1,500 ms per fetch; ours is bounded (register, 5). The
    consumer is built, not started: aiokafka reads the wait when it starts its fetcher."""
    import inspect

    from aiokafka import AIOKafkaConsumer

    from streams.app import create_app
    from streams.exactly_once import FETCH_MAX_WAIT_MS
    from streams.settings import Settings

    migrator = create_app(Settings.from_env({"MIGRATOR_APP_ID": "fetch-wait-test"}))
    consumer = migrator.app.consumer._thread._create_worker_consumer(migrator.app.transport)
    assert isinstance(consumer, AIOKafkaConsumer)
    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS == 100
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)
    await consumer.stop()


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
