"""Run control on Kafka: the compacted ``<app id>-control`` topic, written by operators (CLI,
HTTP) and by workers that pause themselves, and read from its beginning by every worker.

Paused, a worker stops fetching its request partitions (the Kafka client pauses them: the
consumer keeps polling and heartbeating, so the group does not rebalance), lets the batch in
hand finish and commit, and holds the records it had already fetched until the pause is lifted.
Throttled, its lanes space their batches so that the cluster's users/s stays under the
ceiling: each worker takes the share of its request partitions. The state is the topic's, so
it holds across worker restarts, and a change reaches every worker within a fetch (well under
2 s).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.types import TP
from mode import Service

from agents.core import control_state
from agents.core.control_state import ControlState, FailureWindows, Pacer
from agents.stores import redis_mirror
from schemas.events import Outcome
from streams import topics
from streams.connections import stop_kafka_client
from streams.control_topic import applied, pause_value, worker_name
from streams.faust_internals import pause_fetching
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.transactional_writer import KafkaUnavailable, TransactionalWriter

if TYPE_CHECKING:
    from streams.faust_internals import MigratorApp
    from streams.resources import Resources

log = logging.getLogger(__name__)

# How long the reading loop waits for records before it looks at ``should_stop`` again.
_POLL_MS = 200
# How long one fetch of the control topic may wait at the broker. A control record answers the
# fetch the moment it is written, so a longer wait adds nothing to how soon a pause is seen; it
# only sets how often an idle worker asks (5 fetches/s at 200 ms, most of its idle requests).
_FETCH_WAIT_MS = 1_000
_OUTAGE_LOOK_S = 0.5
# How often a lane held by a pause or a throttle looks at the control state again.
_GATE_LOOK_S = 0.2


class ControlWatcher(Service):
    """A worker's view of the control topic, and the gate its lanes pass before each batch."""

    def __init__(
        self, settings: Settings, app: MigratorApp[Any], resources: Resources, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.app = app
        self._resources = resources
        self.current = ControlState()
        self.ready = asyncio.Event()  # the topic was read to its end once
        self.auto_pauses = 0
        # The changes this worker saw (the state read at start first), newest last: the
        # dashboard's history of pauses, auto-pauses and throttles.
        self.changes: deque[dict[str, Any]] = deque(maxlen=100)
        budget = settings.budget
        self.windows = FailureWindows(budget) if budget is not None else None
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._pacer = Pacer()
        self._consumer: AIOKafkaConsumer | None = None
        self._pausing = False
        self._topic = topics.control_topic(settings.app_id)
        self._writer = TransactionalWriter(settings, topic=self._topic, role="control")
        self.add_dependency(self._writer)

    # -- the gate -------------------------------------------------------------------------

    async def admit(self, n: int, *, revoking: Callable[[], bool]) -> bool:
        """Wait until a batch of ``n`` users may start: not paused, within the throttle.

        ``revoking()`` true lets the batch through at once: its partition is being taken
        away, the batch will publish nothing, and the rebalance waits for its records.
        False when the worker stops while paused: the batch is not to be answered here.
        A wait for the throttle ends early when the control state changes (the batch is
        judged again under the new state) or the worker stops (the batch goes on).
        """
        await self.ready.wait()
        loop = asyncio.get_running_loop()
        while True:
            while self.current.paused and not revoking():
                if self.app.should_stop:
                    return False
                try:
                    await asyncio.wait_for(self._resumed.wait(), timeout=_GATE_LOOK_S)
                except TimeoutError:
                    pass
            seen = self.current
            due = loop.time() + self._pacer.wait_s(n, self.worker_rate(), loop.time())
            while self.current == seen and not self.app.should_stop:
                left = due - loop.time()
                if left <= 0:
                    break
                await asyncio.sleep(min(left, _GATE_LOOK_S))
            if self.current == seen or self.app.should_stop:
                return True

    def batch_limit(self, size: int) -> int:
        return control_state.batch_limit(size, self.worker_rate())

    def worker_rate(self) -> float | None:
        """This worker's share of the throttle: its part of the request partitions (asked of
        the consumer only under a throttle: the lanes ask before every batch)."""
        if self.current.rate is None:
            return None
        return control_state.share(
            self.current.rate, len(self.owned_partitions()), self.settings.topic_partitions
        )

    def owned_partitions(self) -> set[TP]:
        try:
            assigned = self.app.consumer.assignment()
        except Exception:  # noqa: BLE001 - no consumer yet (starting): owns nothing
            return set()
        return {tp for tp in assigned if tp.topic == topics.REQUESTED}

    # -- the failure budget and outages -----------------------------------------------------

    def observe(self, outcomes: Sequence[Outcome]) -> None:
        """Count a published batch's outcomes; pause everyone if the budget is spent."""
        if self.windows is None or self.current.paused:
            return
        reason = self.windows.observe((o.run_id, o.outcome == "failed") for o in outcomes)
        if reason is not None:
            self.pause_all(reason)

    def pause_all(self, reason: str) -> None:
        """Pause this worker now and every worker through the topic (retried until written)."""
        if self._pausing or self.current.paused:
            return
        log.warning("pausing every worker: %s", reason)
        self._pausing = True
        self.auto_pauses += 1
        value = pause_value(paused=True, reason=reason, by=f"auto: {worker_name()}", auto=True)
        self._set(control_state.apply(self.current, control_state.PAUSE, value))
        self.add_future(self._write_pause(value))

    async def _write_pause(self, value: dict[str, Any]) -> None:
        delay = 0.5
        try:
            while not self.should_stop:
                try:
                    await self.write(control_state.PAUSE, value)
                    return
                except KafkaUnavailable as exc:
                    log.warning("the pause could not be written yet (%s): trying again", exc)
                    await asyncio.sleep(delay)
                    delay = min(5.0, delay * 2)
        finally:
            self._pausing = False

    async def write(self, key: str, value: dict[str, Any]) -> None:
        """Write a control record in a transaction of its own: ``KafkaUnavailable`` within
        seconds when Kafka does not take it, and then it is never read (``TransactionalWriter``)."""
        await self._writer.write([(key.encode(), json.dumps(value).encode())])

    @Service.task
    async def _watch_outages(self) -> None:
        """Pause everyone once PostgreSQL or Redis has been away longer than allowed.

        PostgreSQL is away while batches wait for it (``waiting_for``); Redis while it does not
        answer a ping. (Not while the mirror is rebuilt after Redis lost its data: Redis
        answers then, and batches record their users as pending meanwhile.)
        """
        limit = self.settings.outage_pause_s
        if limit <= 0:
            return
        since: dict[str, float] = {}
        while not self.should_stop:
            await self.sleep(_OUTAGE_LOOK_S)
            applier = self._resources.batch_applier
            if applier is None:
                continue
            now = time.monotonic()
            away = {
                "PostgreSQL": applier.waiting_for is not None,
                "Redis": applier.redis_down and not await self._redis_answers(),
            }
            for server, down in away.items():
                if not down or self.current.paused:
                    since.pop(server, None)
                    continue
                started = since.setdefault(server, now)
                if now - started >= limit:
                    self.pause_all(
                        f"{server} unavailable for {now - started:.0f} s "
                        f"(MIGRATOR_OUTAGE_PAUSE_S={limit:g})"
                    )

    async def _redis_answers(self) -> bool:
        if self._resources.redis is None:
            return False
        try:
            return await asyncio.wait_for(
                redis_mirror.ping(self._resources.redis), timeout=_OUTAGE_LOOK_S
            )
        except Exception:  # noqa: BLE001 - any failure is "not answering"
            return False

    # -- reading the topic -------------------------------------------------------------------

    async def on_start(self) -> None:
        await ensure_topics(self.settings)  # the control topic among them

    @Service.task
    async def _watch(self) -> None:
        """Read the topic from its beginning, then follow it; Kafka away: try again, keep the
        state known so far (the worker goes on as it was told last)."""
        tp = TopicPartition(self._topic, 0)
        while not self.should_stop:
            try:
                await self._follow(await self._started_consumer(tp), tp)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("control topic not readable (%r): reading it again", exc)
                await self.sleep(1.0)

    async def _follow(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        end = (await consumer.end_offsets([tp]))[tp]
        while not self.should_stop:
            batches = await consumer.getmany(tp, timeout_ms=_POLL_MS)
            for record in batches.get(tp, []):
                self._set(applied(self.current, record.key, record.value))
            if not self.ready.is_set() and await consumer.position(tp) >= end:
                log.info("control: %s", _described(self.current))
                self.ready.set()
                self._apply_to_consumer()

    async def _started_consumer(self, tp: TopicPartition) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                enable_auto_commit=False,
                fetch_max_wait_ms=_FETCH_WAIT_MS,
                # Control records are written in transactions: one that did not commit (its
                # writer answered "Kafka unavailable") is never applied.
                isolation_level="read_committed",
            )
            try:
                await consumer.start()
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
            except BaseException:
                await stop_kafka_client(consumer)
                raise
            self._consumer = consumer
        return self._consumer

    def _set(self, state: ControlState) -> None:
        old = self.current
        if old == state:
            return
        self.current = state
        self.changes.append({"seen_at": datetime.now(UTC).isoformat(), **state.as_dict()})
        if state.rate != old.rate:
            self._pacer = Pacer()  # slots booked at the old rate are void
        if state.paused:
            self._resumed.clear()
        else:
            self._resumed.set()
            if old.paused and self.windows is not None:
                self.windows.reset()  # an operator resumed after looking: judge afresh
        if self.ready.is_set():
            log.warning("control: %s", _described(state))
        self._apply_to_consumer()

    def on_assigned(self) -> None:
        """After a rebalance: newly assigned request partitions are paused too if paused."""
        self._apply_to_consumer()

    def _apply_to_consumer(self) -> None:
        tps = self.owned_partitions()
        if not tps:
            return
        try:
            pause_fetching(self.app, tps, paused=self.current.paused)
        except Exception as exc:  # noqa: BLE001 - the consumer is not started: the lanes hold
            log.info(
                "request partitions not %s at the client: %r",
                "paused" if self.current.paused else "resumed",
                exc,
            )

    async def on_stop(self) -> None:
        if self._consumer is not None:
            try:
                await asyncio.wait_for(stop_kafka_client(self._consumer), timeout=10)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.info("control client stop: %r", exc)


def _described(state: ControlState) -> str:
    parts = [
        f"paused by {state.by}: {state.reason}" if state.paused else "running",
    ]
    if state.rate is not None:
        parts.append(f"throttled to {state.rate:g} users/s")
    if state.cancels:
        latest = max(state.cancels.values(), key=lambda cancel: cancel.at)
        parts.append(
            f"{len(state.cancels)} run(s) cancelled (latest {latest.run_id} at {latest.at} by "
            f"{latest.by})"
        )
    return ", ".join(parts)
