"""The Faust and aiokafka internals the service relies on (``streams.faust_internals``): a
canary that fails on a release where one is gone, and the worker consumer's settings.
"""

from __future__ import annotations


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
