"""The run events' publisher: turns what happens to runs into records of ``user-migration-runs``,
each exactly once, whichever worker sees it.

One worker at a time publishes: the one holding a PostgreSQL advisory lock (on a connection of
its own, for as long as it leads; a worker that dies or loses PostgreSQL loses it, and another
takes over within seconds). The leader

1. follows the control topic from its stored position: each pause, resume, throttle or cancel
   record becomes one event whose id is the record's offset;
2. looks at the runs that may have started or finished since (their figures are the audit
   log's, ``agents.stores.runs``);
3. records the new events in PostgreSQL's outbox (``run_events``), with the control position, in
   one transaction: an event is derived once, whatever crashes after;
4. publishes the outbox's unpublished events in one Kafka transaction under the fixed
   transactional id ``<app id>-run-events``, then marks them published.

The fixed transactional id is what makes "once" hold across leaders: a new leader's producer
fences the previous one (a zombie that still thinks it leads can commit nothing more), and only
then does it read the topic to find which outbox events a predecessor published but could not
mark (a crash between Kafka's commit and PostgreSQL's update). Nothing here is on the hot path:
the batches never wait for it, and a Kafka or PostgreSQL outage only delays events.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from mode import Service

from agents.core import run_events
from agents.core.cohorts import RunSummary
from agents.stores import postgres
from agents.stores import run_events as store
from agents.stores.runs import run_summaries
from schemas.run_events import RunEvent
from streams import topics
from streams.connections import start_kafka_client, stop_kafka_client
from streams.control_topic import worker_name
from streams.faust_internals import abandon_producer
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.control_watcher import ControlWatcher
    from streams.hook_runner import HookRunner
    from streams.resources import Resources

log = logging.getLogger(__name__)

# "run-events" as a number: the advisory lock the leader holds.
LEADER_LOCK_KEY = 0x72756E2D65767473
# A follower asks for the lock this often; a leader's round waits this long for control records
# (a control record ends the wait at once, so a pause is published within a fetch).
_FOLLOWER_LOOK_S = 5.0
_ROUND_WAIT_MS = 1_000
# How often the leader counts the open runs' answers (a run's started and finished events are
# at most this late); control records are turned into events as they come.
_RUNS_LOOK_S = 2.0
_RUNS_LOOKED_AT = 50
_KAFKA_TIMEOUT_S = 15.0


class RunEventPublisher(Service):
    """Publishes run events while this worker holds the leader lock."""

    def __init__(
        self,
        settings: Settings,
        resources: Resources,
        control: ControlWatcher,
        hooks: HookRunner | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.resources = resources
        self.control = control
        self.hooks = hooks
        self.leading = False
        self.published = 0
        self.transactional_id = f"{settings.app_id}-run-events"
        # Runs whose latest figures made every event they can (finished before ``since``, or
        # finished and published): not counted again until their request count changes.
        self._settled: dict[str, int] = {}
        # The outbox may hold unpublished events (recorded this round, or left by a failure).
        self._dirty = True

    @Service.task
    async def _lead(self) -> None:
        await self.resources.ready.wait()
        while not self.should_stop:
            try:
                await self._lead_while_holding_the_lock()
            except Exception as exc:  # noqa: BLE001 - a server away: lead again later
                if not self.should_stop:
                    log.warning("run events: %s: leading again in a few seconds", _said(exc))
            self.leading = False
            await self.sleep(_FOLLOWER_LOOK_S)

    async def _lead_while_holding_the_lock(self) -> None:
        async with self.resources.pool.acquire() as conn:
            if not await postgres.try_advisory_lock(conn, LEADER_LOCK_KEY):
                return
            try:
                await self._lead_with(conn)
            finally:
                if not conn.is_closed():
                    try:
                        await postgres.advisory_unlock(conn, LEADER_LOCK_KEY)
                    except Exception:  # noqa: BLE001 - the connection goes, and the lock with it
                        await conn.close()

    async def _lead_with(self, conn: Any) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            transactional_id=self.transactional_id,
            enable_idempotence=True,
            acks="all",
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=_ROUND_WAIT_MS,  # idle: one fetch a second, answered at once
        )
        try:
            # Starting the producer fences the previous leader's and settles what it left open.
            await asyncio.wait_for(start_kafka_client(producer), _KAFKA_TIMEOUT_S)
            await asyncio.wait_for(start_kafka_client(consumer), _KAFKA_TIMEOUT_S)
            control = TopicPartition(topics.control_topic(self.settings.app_id), 0)
            consumer.assign([control])
            end = (await consumer.end_offsets([control]))[control]
            position = await store.start(
                conn, self.settings.app_id, now=datetime.now(UTC), control_end=end
            )
            consumer.seek(control, position.control_offset)
            await self._reconcile(conn)
            known = await store.known(conn, self.settings.app_id)
            self.leading = True
            log.info(
                "run events: publishing them (this worker leads; events since %s)",
                position.since.isoformat(),
            )
            looked = 0.0
            self._dirty = True  # whatever the previous leader left in the outbox
            loop = asyncio.get_running_loop()
            while not self.should_stop:
                batches = await consumer.getmany(control, timeout_ms=_ROUND_WAIT_MS)
                records = batches.get(control, [])
                runs_due = loop.time() - looked >= _RUNS_LOOK_S
                if records or runs_due or self._dirty:
                    if runs_due:
                        looked = loop.time()
                    await self._round(
                        conn, producer, records, position.since, known, look_at_runs=runs_due
                    )
        except BaseException:
            await abandon_producer(producer)
            raise
        else:
            await _quietly(producer.stop())
        finally:
            self.leading = False
            await _quietly(stop_kafka_client(consumer))

    async def _round(
        self,
        conn: Any,
        producer: AIOKafkaProducer,
        records: Sequence[ConsumerRecord[bytes, bytes]],
        since: datetime,
        known: set[str],
        *,
        look_at_runs: bool,
    ) -> None:
        """Derive what happened since the last round, record it, publish what is recorded."""
        summaries = await self._open_runs(conn, known) if look_at_runs or records else []
        in_progress = run_events.in_progress(summaries)
        control = [_control_event(record, in_progress) for record in records]
        derived = run_events.merged(
            [event for event in control if event is not None],
            run_events.from_runs(summaries, since=since, known=known),
        )
        next_offset = records[-1].offset + 1 if records else None
        if derived or next_offset is not None:
            await store.record(
                conn,
                self.settings.app_id,
                derived,
                now=datetime.now(UTC),
                hooks=self.hooks is not None,
                control_offset=next_offset,
            )
            known.update(e.event_id for e in derived if e.event in ("started", "finished"))
            self._dirty = self._dirty or bool(derived)
        if self._dirty or look_at_runs:  # look_at_runs: an event of `migrator verify` too
            await self._publish(conn, producer)

    async def _open_runs(self, conn: Any, known: set[str]) -> list[RunSummary]:
        """The figures of the runs that may still make an event (cheap once they are settled:
        a run's figures are counted only while its request count has no finished event)."""
        recent = await store.recent_runs(conn, _RUNS_LOOKED_AT)
        looked = [
            run_id
            for run_id, requested in recent.items()
            if self._settled.get(run_id) != requested
            and f"finished:{run_id}:{requested}" not in known
        ]
        if not looked:
            return []
        summaries = await run_summaries(
            conn,
            now=datetime.now(UTC),
            run_ids=looked,
            limit=len(looked),
            cancels=self.control.current.cancels,
        )
        for run in summaries:
            if run.finished_at is not None:
                # Finished: its event is made this round (or was before ``since``: never).
                self._settled[run.run_id] = run.requested
        return summaries

    async def _publish(self, conn: Any, producer: AIOKafkaProducer) -> None:
        """The outbox's unpublished events, in one transaction, then marked published."""
        pending = await store.unpublished(conn, self.settings.app_id)
        self._dirty = False  # set again below if publishing fails (an exception ends the lead)
        if not pending:
            return
        self._dirty = True
        for event in pending:
            event.published_by = worker_name()
        await asyncio.wait_for(_send(producer, pending), _KAFKA_TIMEOUT_S)
        await store.mark_published(
            conn, self.settings.app_id, [e.event_id for e in pending], now=datetime.now(UTC)
        )
        self._dirty = False
        self.published += len(pending)
        for event in pending:
            log.info("run event %s published (%s)", event.event_id, event.event)
        if self.hooks is not None:
            self.hooks.nudge()

    async def _reconcile(self, conn: Any) -> None:
        """Outbox events a previous leader published but did not mark (it stopped between
        Kafka's commit and PostgreSQL's update): marked now, so they are not published twice.
        Read after this leader's producer started, which fenced the previous one."""
        pending = {e.event_id for e in await store.unpublished(conn, self.settings.app_id)}
        if not pending:
            return
        found = await asyncio.wait_for(_published_ids(self.settings, pending), _KAFKA_TIMEOUT_S)
        if found:
            await store.mark_published(
                conn, self.settings.app_id, sorted(found), now=datetime.now(UTC)
            )
            log.info("run events: %d already on the topic, marked published", len(found))


async def _send(producer: AIOKafkaProducer, events: Sequence[RunEvent]) -> None:
    await producer.begin_transaction()
    futures = [
        await producer.send(
            topics.RUN_EVENTS,
            json.dumps(event.model_dump(mode="json")).encode(),
            key=event.event_id.encode(),
        )
        for event in events
    ]
    await asyncio.gather(*futures)
    await producer.commit_transaction()


async def _published_ids(settings: Settings, wanted: set[str]) -> set[str]:
    """Which of ``wanted`` the topic holds (read_committed, from its beginning: a handful of
    records per run)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await start_kafka_client(consumer)
    try:
        tp = TopicPartition(topics.RUN_EVENTS, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        found: set[str] = set()
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=500)
            for record in batches.get(tp, []):
                if record.key is not None and record.key.decode() in wanted:
                    found.add(record.key.decode())
        return found
    finally:
        await stop_kafka_client(consumer)


def _control_event(
    record: ConsumerRecord[bytes, bytes], in_progress: Sequence[str]
) -> RunEvent | None:
    if record.key is None:
        return None
    try:
        value = None if record.value is None else json.loads(record.value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # the control watcher says so already
    if value is not None and not isinstance(value, dict):
        return None
    return run_events.from_control(
        record.offset,
        record.key.decode("utf-8", "replace"),
        value,
        in_progress=in_progress,
        fallback_at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
    )


async def _quietly(stopping: Any) -> None:
    try:
        await asyncio.wait_for(stopping, timeout=5)
    except Exception as exc:  # noqa: BLE001 - Kafka away: the client is gone anyway
        log.info("run events: client stop: %s", _said(exc))


def _said(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
