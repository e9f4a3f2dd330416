"""The hand-written reference line of ``make bench``: a migrate's writes with aiokafka, asyncpg and
redis-py directly, at-least-once, no framework. Not the service, and not used by it.

Why: the flood figure alone does not say what the service's machinery (Faust, the lanes, the
per-partition Kafka transactions, the failure policy, the claims) costs. This pipeline makes the
same writes for the same requests on the same servers with nothing around them, so "service /
hand-written" says how much of a plain pipeline's throughput the service keeps.

It consumes ``user-migration-requested`` in its own consumer group and takes, from each fetch,
each partition's records in batches of up to ``MIGRATOR_BATCH_SIZE`` (the partitions side by
side, one batch of a partition after the other, as the service's lanes do). One batch is one
PostgreSQL transaction on one connection, the statements ``agents.batch_transaction`` runs for
new migrate requests, built by the project's pure functions:

- which of the batch's positions were answered before (``processed_records.sql``): a record
  redelivered after a crash between the commit and the offset commit is answered again with
  what was stored, not applied twice; that is what keeps at-least-once from doubling a write;
- the users' legacy rows and sessions locked (``SELECT … FOR UPDATE``), the ledger read;
- each request decided (``agents.core.decide``), its rows planned (``agents.core.effects``);
- the sessions COPYed, their 24 step rows expanded by PostgreSQL (``insert_steps.sql``), the
  manifests (versioned, SHA-256 checksum) COPYed, the legacy rows marked migrated;
- the ledger and audit rows COPYed (``answer_rows``), the processed records COPYed;
- the partition's counters row locked and advanced (``agents.core.counters``);
- the Redis mirror written (one MSET in one pipeline) while the rows are locked, then COMMIT.

Then one outcome record per request (``streams.codecs.batch_records``: the service's topic,
key, bytes and headers) to the request's partition of its outcome topic, acks=all, all awaited;
the consumer offsets are committed once a fetch's batches are published.

Left out, and why:

- dead letters: a record that does not decode stops the pipeline (the bench publishes none);
- rollbacks, dry runs, a user twice in one batch, a user with a session, a request id in the
  ledger, a position answered before with other bytes: each stops the pipeline with a line
  saying so. The bench sends none of them; they need the waves, the mirror repair and the
  legacy-row restore the service has, which would make this a copy of it;
- ``known_failures.sql``: it tells repeated failures apart for the failure budget only;
- retries, waiting out an outage, halving a batch, a pending mirror when Redis refuses: any
  error ends the process non-zero (a bench line must not hide one);
- run control (pause, throttle, cancel), the answer audit, stats, health, metrics: the
  service's, not a migrate's writes;
- exactly-once: outcomes are plain sends and offsets are committed after them, so a crash in
  between publishes an outcome twice (its writes are not redone: see the first point).

Run by ``scripts/bench_e2e.py`` through ``ReferenceProcess``: it prints ``ready`` once its
partitions are assigned and positioned at their end, answers until SIGTERM, then prints one
JSON line of what it did. Servers come from KAFKA_BROKER_URL, DATABASE_URL and REDIS_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic_core import to_json

import sql
from agents.core import counters
from agents.core.decide import Failed, Migrate, Work, decide
from agents.core.effects import Answer, answer, answer_rows, plan_effects, processed_rows
from agents.core.outcomes import build_outcome
from agents.core.rows import AuditRow, LedgerRow, ManifestRow, ProcessedRow, SessionRow
from agents.stores.postgres import Conn, legacy_row_from_record, steps_arguments
from agents.stores.redis_mirror import session_key, user_key
from schemas.events import MigrationRequest, decode_request, parse_outcome_json
from schemas.rows import JsonText
from streams import topics
from streams.codecs import Consumed, Origin, batch_records
from streams.connections import create_pool
from streams.settings import Settings
from streams.trace_context import continued_or_new

ROOT = Path(__file__).resolve().parents[1]
APP_ID = "bench-reference"
READY = "ready"


class Unsupported(Exception):
    """A record this pipeline does not handle (see the module's docstring): it stops."""


# --- PostgreSQL ----------------------------------------------------------------------------------


async def _copy(
    conn: Conn, table: str, rows: Sequence[tuple[Any, ...]], columns: Sequence[str]
) -> None:
    if rows:
        await conn.copy_records_to_table(table, records=rows, columns=list(columns))


# --- one batch -----------------------------------------------------------------------------------


def _consumed(record: ConsumerRecord[bytes, bytes]) -> Consumed:
    origin = Origin(record.topic, record.partition, record.offset, record.timestamp)
    return Consumed(origin, record.key, record.value, list(record.headers or ()))


def _work(record: Consumed) -> Work:
    request = decode_request(record.key, record.value)
    origin = record.origin
    if not isinstance(request, MigrationRequest):
        raise Unsupported(f"record {origin.partition}:{origin.offset} is a dead letter: {request}")
    if request.action != "migrate" or request.dry_run:
        raise Unsupported(f"record {origin.partition}:{origin.offset} is not a plain migrate")
    return Work(request, origin.partition, origin.offset, origin.timestamp_ms, record.digest())


@dataclass
class Pipeline:
    """The stores and clients of the pipeline, and what it did (printed when it stops)."""

    pool: asyncpg.Pool
    redis: aioredis.Redis
    producer: AIOKafkaProducer
    app_id: str
    batch_size: int
    topic_prefix: str = ""
    done: dict[str, int] = field(
        default_factory=lambda: {"batches": 0, "records": 0, "answered_before": 0}
    )

    async def partition(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """One partition's records of a fetch: batch after batch, each published once written."""
        for start in range(0, len(records), self.batch_size):
            batch = [_consumed(record) for record in records[start : start + self.batch_size]]
            answers = await self.apply(batch)
            await self.publish(batch, answers)
            self.done["batches"] += 1
            self.done["records"] += len(batch)

    async def apply(self, batch: Sequence[Consumed]) -> list[Answer]:
        """The batch's writes in one PostgreSQL transaction (Redis written before COMMIT, under
        the rows' locks, as the service does); the answers in record order."""
        works = [_work(record) for record in batch]
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            before = await self._answered_before(conn, works)
            fresh = [w for w in works if (w.partition, w.offset) not in before]
            answers = await self._migrate(conn, fresh, now) if fresh else {}
        self.done["answered_before"] += len(before)
        return [before.get(position) or answers[position] for position in map(_position, works)]

    async def _answered_before(
        self, conn: Conn, works: Sequence[Work]
    ) -> dict[tuple[int, int], Answer]:
        partitions = [w.partition for w in works]
        offsets = [w.offset for w in works]
        found = await conn.fetch(sql.query("processed_records"), self.app_id, partitions, offsets)
        digests = {_position(w): w.digest for w in works}
        before = {}
        for row in found:
            position = (row["source_partition"], row["source_offset"])
            if bytes(row["record_digest"]) != digests[position] or row["outcome"] is None:
                raise Unsupported(f"position {position} was answered before for other bytes")
            before[position] = Answer(parse_outcome_json(row["outcome"]), JsonText(row["outcome"]))
        return before

    async def _migrate(
        self, conn: Conn, works: Sequence[Work], now: datetime
    ) -> dict[tuple[int, int], Answer]:
        started = time.perf_counter()
        users = sorted({w.request.user_id for w in works})
        if len(users) != len(works):
            raise Unsupported("a user twice in one batch")
        legacy = {
            r["user_id"]: legacy_row_from_record(r)
            for r in await conn.fetch(sql.query("lock_legacy_rows"), users)
        }
        if await conn.fetch(sql.query("lock_sessions"), users):
            raise Unsupported("a user of the batch has a session already")
        request_ids = [w.request.request_id for w in works]
        if await conn.fetch(sql.query("ledger_entries"), request_ids):
            raise Unsupported("a request id of the batch is in the ledger already")
        decisions = [
            decide(w, legacy=legacy.get(w.request.user_id), session=None, ledger=None, now=now)
            for w in works
        ]
        if not all(isinstance(d, Migrate | Failed) for d in decisions):
            raise Unsupported("a decision other than migrate or failed")
        effects = plan_effects(works, decisions, now=now)
        await _copy(conn, "onboarding_sessions", effects.sessions, SessionRow._fields)
        if effects.steps:
            await conn.execute(sql.query("insert_steps"), *steps_arguments(effects.steps))
        await _copy(conn, "business_context_manifests", effects.manifests, ManifestRow._fields)
        if effects.migrated_users:
            await conn.execute(sql.query("mark_legacy_migrated"), effects.migrated_users, now)
        elapsed_ms = (time.perf_counter() - started) * 1000 / len(works)
        answers = [
            answer(build_outcome(w, d, now=now, duration_ms=elapsed_ms))
            for w, d in zip(works, decisions, strict=True)
        ]
        ledger, audit = answer_rows(works, decisions, answers, now=now)
        await _copy(conn, "migration_requests", ledger, LedgerRow._fields)
        await _copy(conn, "onboarding_migration_log", audit, AuditRow._fields)
        answered = list(zip(works, answers, strict=True))
        processed = processed_rows(self.app_id, answered, [], now=now)
        await _copy(conn, "processed_records", processed, ProcessedRow._fields)
        await self._count(conn, answered, now)
        documents = [doc for doc in effects.mirror.documents.values() if doc is not None]
        await self._mirror(documents)
        return {_position(w): a for w, a in answered}

    async def _count(
        self, conn: Conn, answered: Sequence[tuple[Work, Answer]], now: datetime
    ) -> None:
        """The partition's counters row advanced by the batch (a batch is one partition's)."""
        partition = answered[0][0].partition
        now_ms = time.time() * 1000
        latencies = [
            None if w.timestamp_ms is None else max(0.0, now_ms - w.timestamp_ms)
            for w, _ in answered
        ]
        stored = await conn.fetch(sql.query("lock_counters"), self.app_id, [partition])
        now_s = int(now_ms // 1000)
        delta = counters.batch_delta(
            [a.outcome for _, a in answered], latencies, dead_lettered=0, now_s=now_s
        )
        total = counters.merge(
            stored[0]["totals"] if stored else counters.empty(), delta, now_s=now_s
        )
        await conn.execute(sql.query("save_counters"), self.app_id, [partition], [total], now)

    async def _mirror(self, documents: Sequence[dict[str, Any]]) -> None:
        if not documents:
            return
        pairs: dict[str, bytes] = {}
        for document in documents:
            pairs[session_key(document["session_id"])] = to_json(document)
            pairs[user_key(document["user_id"])] = str(document["session_id"]).encode()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.mset(pairs)
            await pipe.execute()

    async def publish(self, batch: Sequence[Consumed], answers: Sequence[Answer]) -> None:
        """One outcome per request on its request's partition; returns once all are acked."""
        traces = continued_or_new([record.headers for record in batch])
        sends = batch_records(list(zip(batch, answers, strict=True)), traces)
        futures = [
            await self.producer.send(
                self.topic_prefix + send.topic,
                send.value,
                key=send.key,
                partition=record.origin.partition,
                headers=list(send.headers),
            )
            for record, send in zip(batch, sends, strict=True)
        ]
        await asyncio.gather(*futures)


def _position(work: Work) -> tuple[int, int]:
    assert work.partition is not None and work.offset is not None
    return work.partition, work.offset


# --- the process -------------------------------------------------------------------------------


async def _answer(
    pipeline: Pipeline,
    consumer: AIOKafkaConsumer,
    fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
) -> None:
    """A fetch's partitions side by side, then its offsets: nothing is committed unanswered."""
    async with asyncio.TaskGroup() as group:
        for records in fetched.values():
            group.create_task(pipeline.partition(records))
    await consumer.commit({tp: records[-1].offset + 1 for tp, records in fetched.items()})


async def _assigned(
    consumer: AIOKafkaConsumer, timeout_s: float = 60.0
) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    """Wait for the group's assignment and each partition's position (the end, for a new group:
    what is published after ``ready`` is answered, nothing before). Returns any records fetched
    meanwhile (a group that has committed before starts from there)."""
    early: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
    deadline = time.monotonic() + timeout_s
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no partition assigned within {timeout_s:.0f}s")
        for tp, records in (await consumer.getmany(timeout_ms=100)).items():
            early.setdefault(tp, []).extend(records)
    for tp in consumer.assignment():
        await consumer.position(tp)
    return early


async def run(app_id: str, topic_prefix: str) -> dict[str, int]:
    settings = Settings.from_env()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # One connection per partition's batch in flight, all opened before ``ready``.
    connections = settings.topic_partitions
    # The service's pool: the same jsonb codec (binary, for COPY) and timeouts.
    pool = await create_pool(settings, min_size=connections, max_size=connections)
    redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5)
    bootstrap = settings.kafka_bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(
        topic_prefix + topics.REQUESTED,
        bootstrap_servers=bootstrap,
        group_id=app_id,
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    pipeline = Pipeline(pool, redis, producer, app_id, settings.batch_size, topic_prefix)
    try:
        await producer.start()
        await consumer.start()
        early = await _assigned(consumer)
        print(READY, flush=True)
        if early:
            await _answer(pipeline, consumer, early)
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=100)
            if fetched:
                await _answer(pipeline, consumer, fetched)
    finally:
        await consumer.stop()
        await producer.stop()
        await redis.aclose()
        await pool.close()
    return pipeline.done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--app-id", default=APP_ID, help="consumer group and app id of its rows")
    parser.add_argument("--topic-prefix", default="", help="prefix of every topic name (tests)")
    args = parser.parse_args(argv)
    try:
        done = asyncio.run(run(args.app_id, args.topic_prefix))
    except BaseException as exc:  # noqa: BLE001 - one line on stderr, whatever it was
        while isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        if isinstance(exc, KeyboardInterrupt):
            return 130
        print(f"bench_reference: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps(done), flush=True)
    return 0


# --- the handle the bench and the test hold ------------------------------------------------------


class ReferenceFailed(Exception):
    """The reference process did not start, exited, or stopped badly: one line."""


@dataclass
class ReferenceProcess:
    """The pipeline in a process of its own, so that its CPU time is its own, as the worker's
    is; its stderr goes to ``log_path``."""

    process: asyncio.subprocess.Process
    log_path: Path

    @classmethod
    async def start(
        cls,
        env: dict[str, str],
        log_path: Path,
        *,
        app_id: str = APP_ID,
        topic_prefix: str = "",
        timeout_s: float = 90.0,
    ) -> ReferenceProcess:
        """Started and ready: its partitions assigned and positioned."""
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(Path(__file__).resolve()),
                "--app-id",
                app_id,
                "--topic-prefix",
                topic_prefix,
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        handle = cls(process, log_path)
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ReferenceFailed(
                f"the reference pipeline was not ready within {timeout_s:.0f}s; log: {log_path}"
            ) from None
        if line.strip() != READY.encode():
            await process.wait()
            raise ReferenceFailed(f"the reference pipeline did not start: {handle.last_line()}")
        return handle

    @property
    def pid(self) -> int:
        return self.process.pid

    def last_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            lines = []
        found = [line for line in lines if line.strip()]
        return f"{found[-1] if found else '(empty log)'} (log: {self.log_path})"

    def check(self, doing: str) -> None:
        """Raise if the process has exited (the bench's waits call this, so none hangs)."""
        if self.process.returncode is not None:
            raise ReferenceFailed(
                f"the reference pipeline exited (code {self.process.returncode}) {doing}; "
                f"{self.last_line()}"
            )

    async def stop(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """SIGTERM, then what it says it did; raises if it failed or does not stop."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = await asyncio.wait_for(self.process.communicate(), timeout_s)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise ReferenceFailed(
                f"the reference pipeline did not stop in {timeout_s:.0f}s"
            ) from None
        if self.process.returncode != 0:
            raise ReferenceFailed(
                f"the reference pipeline failed (code {self.process.returncode}): "
                f"{self.last_line()}"
            )
        lines = out.decode().splitlines()
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        return result


@asynccontextmanager
async def running(
    env: dict[str, str], log_path: Path, **options: Any
) -> AsyncIterator[ReferenceProcess]:
    """A started reference process, killed on the way out if nobody stopped it."""
    handle = await ReferenceProcess.start(env, log_path, **options)
    try:
        yield handle
    finally:
        if handle.process.returncode is None:
            handle.process.kill()
            await handle.process.wait()


if __name__ == "__main__":
    sys.exit(main())
