"""The Faust and aiokafka internals the service relies on (``streams.faust_internals``): a
canary that fails on a release where one is gone, and the worker consumer's settings.
"""

from __future__ import annotations

from typing import Any


def test_the_internals_we_rely_on_are_there() -> None:
    """A canary: streams/faust_internals.py's register names these; a Faust or aiokafka release
    that renames or drops one must fail here, with the name, not in production."""
    import inspect

    import aiokafka
    import faust
    from aiokafka.client import AIOKafkaClient
    from aiokafka.producer.transaction_manager import TransactionManager, TransactionState
    from faust.transport.consumer import Consumer

    checked = {"faust": "0.15.", "aiokafka": "0.14."}
    for module, prefix in ((faust, checked["faust"]), (aiokafka, checked["aiokafka"])):
        assert module.__version__.startswith(prefix), (
            f"{module.__name__} {module.__version__}: streams/faust_internals.py was checked "
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
    # 7 and 8
    assert isinstance(inspect.getattr_static(faust.Table, "data"), property), "Table.data is gone"
    assert callable(getattr(AIOKafkaClient, "force_metadata_update", None))
    assert "self._client = AIOKafkaClient" in inspect.getsource(aiokafka.AIOKafkaConsumer.__init__)
    assert {"IN_TRANSACTION", "ABORTABLE_ERROR"} <= set(TransactionState.__members__)
    assert "_committed_offset" in inspect.getsource(Consumer.__init__), (
        "Consumer._committed_offset is gone"
    )
    parameters = inspect.signature(Consumer._commit_offsets).parameters
    assert list(parameters)[:3] == ["self", "offsets", "start_new_transaction"], parameters
    revoked = inspect.getsource(faust.App._on_partitions_revoked)
    # The reason for the override: Faust waits for in-flight records before its signal.
    assert revoked.index("_consumer_wait_empty") < revoked.index("on_partitions_revoked.send")
    # 10: the batching consumer replaces Faust's fetch loop and keeps its bookkeeping.
    from faust.transport.drivers import aiokafka as faust_aiokafka

    assert callable(getattr(faust.App, "_new_transport", None)), "App._new_transport is gone"
    assert faust_aiokafka.Transport.Consumer is faust_aiokafka.Consumer
    drain = inspect.getsource(Consumer._drain_messages)
    for name in ("getmany(", "_read_offset", "_add_gap", "_commit_every", "suspend_flow"):
        assert name in drain, f"Consumer._drain_messages no longer uses {name}"
    for name in ("_n_acked", "_unacked_messages", "diag", "callback"):
        assert name in inspect.getsource(Consumer), f"Consumer.{name} is gone"
    assert "tracked" in inspect.getsource(faust.types.tuples.Message.__init__)


def test_the_app_consumes_with_the_batching_consumer() -> None:
    """The worker's app makes its consumer a ``BatchingConsumer`` (register, 10): without it
    every request would take Faust's per-record path, correct but a quarter slower."""
    from streams.faust_internals import BatchingConsumer, MigratorApp

    app: MigratorApp[Any] = MigratorApp(
        "canary", broker="kafka://localhost:1", rebalance=lambda app: None
    )
    assert app.transport.Consumer is BatchingConsumer
    assert app.batch_sinks == {}


async def test_fetches_wait_at_most_the_bound() -> None:
    """Faust's worker consumer waits 1,500 ms per fetch and reads uncommitted records; ours is
    bounded and reads committed ones (register, 5). The consumer is built, not started:
    aiokafka reads both when it starts its fetcher."""
    import inspect

    from aiokafka import AIOKafkaConsumer

    from streams.app import create_app
    from streams.faust_internals import FETCH_MAX_WAIT_MS
    from streams.settings import Settings

    migrator = create_app(Settings.from_env({"MIGRATOR_APP_ID": "fetch-wait-test"}))
    consumer = migrator.app.consumer._thread._create_worker_consumer(migrator.app.transport)
    assert isinstance(consumer, AIOKafkaConsumer)
    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS == 100
    assert consumer._isolation_level == "read_committed"  # requests of aborted transactions
    source = inspect.getsource(AIOKafkaConsumer.start)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in source
    assert "isolation_level=self._isolation_level" in source
    await consumer.stop()
