"""Fault-injection runs: a paced flood of requests, faults one at a time, then the whole truth.

One function, ``run_faults``, serves both the CI test (tests/e2e/test_faults.py) and the soak
(scripts/soak): it seeds users, starts workers in one consumer group, publishes a flood of
requests (duplicates, dry runs, rollbacks, poison records) in the background, injects each fault
of a list while the flood runs, measures how long the service takes to recover from each, and,
once everything is answered, checks what the contract promises against what the topics, the
databases and every worker's ``stats`` actually hold, and that the workers' own answer audit
found exactly the records the run found unanswered (the service must see its promise broken).
``RunConfig.seed`` drives the flood and the schedule: the faults' order, the worker hit, a wait
of 0-3 s after the backlog drained, the 0.2-2 s before a killed worker is restarted.

The checks never trust the service's own code: requests are identified by what is on the request
topic, per-user expectations come from a small model of the contract (migrated or not), broken
legacy rows are classified from the rows themselves, and counters are recomputed from the topics.
Every problem names the request, what was expected and what was seen, so a red run is a bug
report rather than a riddle.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import re
import signal
import subprocess
import time
import urllib.error
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from harness import Stack, Worker, kill_server, restart_servers, seed, server_pid

from streams import topics
from streams.cli.kafka_io import read_records

# --- What a run is made of --------------------------------------------------------------------

WORKER_FAULTS = ("worker_kill", "worker_stop")
SERVER_FAULTS = ("postgres_kill", "redis_kill", "redis_flush", "kafka_kill")
# The deploys and cluster faults of issue 21 (tests/e2e/topology_faults.py): a worker restarted
# in place (static membership), brokers of a 3-broker cluster killed or restarted one at a
# time, and workers added or removed.
TOPOLOGY_FAULTS = (
    "worker_restart",
    "broker_leader_kill",
    "broker_coordinator_kill",
    "broker_restart",
    "scale_out",
    "scale_in",
)
FAULT_KINDS = (*WORKER_FAULTS, *SERVER_FAULTS, *TOPOLOGY_FAULTS)
# The targets: outcomes flow again within 15 s of a worker fault, 10 s of a server's return.
RECOVERY_GOAL_S = {
    "worker_kill": 15.0,
    "worker_stop": 15.0,
    "postgres_kill": 10.0,
    "redis_kill": 10.0,
    "redis_flush": 10.0,
    "kafka_kill": 10.0,
    "worker_restart": 3.0,
    "broker_leader_kill": 15.0,
    "broker_coordinator_kill": 15.0,
    "broker_restart": 15.0,
    "scale_out": 15.0,
    "scale_in": 15.0,
}
# Rough length of one fault with its recovery, to pace the flood over the whole schedule.
_FAULT_COST_S = {
    "worker_kill": 25.0,
    "worker_stop": 32.0,
    "postgres_kill": 18.0,
    "redis_kill": 18.0,
    "redis_flush": 8.0,
    "kafka_kill": 35.0,
    "worker_restart": 15.0,
    "broker_leader_kill": 40.0,
    "broker_coordinator_kill": 40.0,
    "broker_restart": 35.0,
    "scale_out": 25.0,
    "scale_in": 25.0,
}
# Server faults first: a worker fault that leaves workers crash-looping would otherwise hide
# what the later server faults do to the outcomes.
# The workers' answer audit runs this often in a fault run, so its verdict comes quickly.
AUDIT_EVERY_S = 3.0
# Pruning of processed_records runs in a fault run, with a retention short enough to delete
# answers while the faults go on (rounds every 10 s) and still above the SIGSTOP (``stop_s``):
# exactly-once is checked with pruning at work, as in production, where the retention is days.
PRUNE_RETENTION_S = 20.0

CI_FAULTS = (
    "redis_kill",
    "postgres_kill",
    "redis_flush",
    "worker_kill",
    "worker_stop",
    "kafka_kill",
)

RETRYABLE_CODES = frozenset({"database_unavailable", "cache_unavailable"})
# Every record the run publishes carries its sequence number; poison records also their kind,
# so that what is on the topic can be told apart without asking the service's own decoder.
SEQ_HEADER = "e2e-seq"
POISON_HEADER = "e2e-poison"
# Contract §5: the legacy step names, and the answer keys with their types.
LEGACY_STEPS = frozenset(
    {
        "account",
        "profile",
        "workspace",
        "company",
        "industry",
        "goals",
        "audience",
        "brand",
        "competitors",
        "integrations",
        "team",
        "review",
    }
)
TEXT_ANSWERS = (
    "company_name",
    "company_size",
    "industry",
    "sub_industry",
    "audience",
    "brand_voice",
)
LIST_ANSWERS = (
    "goals",
    "success_metrics",
    "segments",
    "brand_assets",
    "competitors",
    "integrations",
)
PLANNABLE = frozenset({"not_started", "in_progress", "completed"})
# Poison records: kind → the dead-letter reason the contract implies (None: not named there).
POISON_KINDS: dict[str, str | None] = {
    "not_json": None,
    "not_utf8": None,
    "not_object": None,
    "no_value": None,
    "missing_fields": None,
    "unknown_action": None,
    "wrong_type": None,
    "bad_user_id": None,
    "key_mismatch": "key_mismatch",
    "no_key": "key_mismatch",
}
STATS_PATH = "/api/v1/onboarding/migration/stats"
COUNTER_FIELDS = (
    "requested",
    "migrated",
    "rolled_back",
    "failed",
    "dry_run",
    "already_done",
    "dead_lettered",
)


class FaultRunError(RuntimeError):
    """The run itself could not go on (a server did not come back, a worker never started)."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that shapes a run; the defaults are the CI test's."""

    users: int = 3000
    faults: tuple[str, ...] = CI_FAULTS
    workers: int = 2
    problem_ratio: float = 0.01
    flood_s: float | None = None  # None: paced over the estimated length of the fault schedule
    warmup_s: float = 8.0
    recovery_timeout_s: float = 60.0
    settle_timeout_s: float = 45.0
    final_timeout_s: float = 180.0
    server_down_s: float = 5.0
    kafka_down_s: float = 3.0
    stop_s: float = 16.0  # the workers' session timeout (10 s) + 6 s
    batch_size: int = 200
    filler_per_s: float = 10.0
    seed: int = 7
    # Issue 21: workers with MIGRATOR_INSTANCE_ID (their slot's name), the faults in the order
    # given (a rolling restart, 1 -> 3 -> 1 workers), and the request topic's partitions.
    static_members: bool = False
    ordered: bool = False
    partitions: int | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.faults) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kind(s): {', '.join(unknown)}")
        if self.workers < 2 and any(f in (*WORKER_FAULTS, "worker_restart") for f in self.faults):
            raise ValueError("worker faults need at least two workers")

    def flood_duration_s(self) -> float:
        if self.flood_s is not None:
            return self.flood_s
        return max(30.0, 0.6 * sum(_FAULT_COST_S[f] for f in self.faults))


def run_seed(variable: str) -> int:
    """The seed named by the environment ``variable`` when set (to run a failing seed again),
    else a new one: a fixed seed would try one flood and one schedule forever and hide a
    failure that comes one run in N."""
    given = os.environ.get(variable, "")
    return int(given) if given else random.SystemRandom().randrange(1, 1_000_000)


def soak_schedule(kills: int) -> tuple[str, ...]:
    """``kills`` worker SIGKILLs with the other fault kinds spread evenly between them."""
    others = [f for f in FAULT_KINDS if f != "worker_kill"]
    schedule: list[str] = []
    every = max(1, kills // (len(others) + 1))
    pending = list(others)
    for number in range(1, kills + 1):
        schedule.append("worker_kill")
        if pending and number % every == 0:
            schedule.append(pending.pop(0))
    return (*schedule, *pending)


# --- Report ------------------------------------------------------------------------------------


@dataclass
class Recovery:
    """One injected fault and how long the service took to be whole again.

    ``recovery_s`` counts from the fault (worker faults) or from the server's return (server
    faults) until outcomes flow again *and* every record published before the fault is answered;
    None when that did not happen within the run's recovery timeout.
    """

    fault: str
    target: str
    at_s: float
    down_s: float
    flow_s: float | None
    drained_s: float | None
    recovery_s: float | None
    goal_s: float
    backlog_at_fault: int


@dataclass
class SelfExit:
    """A worker that exited although nobody killed it (restarted 1 s later, like a supervisor)."""

    worker: str
    at_s: float
    returncode: int
    during: str
    last_error: str


@dataclass
class Problem:
    check: str
    message: str


@dataclass
class RunReport:
    config: dict[str, Any]
    stack_dir: str
    started_at: str
    duration_s: float = 0.0
    recoveries: list[Recovery] = field(default_factory=list)
    self_exits: list[SelfExit] = field(default_factory=list)
    kills: int = 0
    totals: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    log_markers: dict[str, dict[str, int]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    # What a topology fault observed besides its recovery (generations, assignments, leaders).
    notes: list[str] = field(default_factory=list)

    def problem_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(p.check for p in self.problems).items()))

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["problem_counts"] = self.problem_counts()
        document["self_exit_count"] = len(self.self_exits)
        return document

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")

    def render(self, *, examples: int = 5) -> str:
        """The figures for a person: recovery table, self-exits, totals, problems with examples."""
        lines = [
            "",
            "fault            target      at(s)  down(s)  flow(s)  drained(s)  "
            "recovery(s)  goal(s)",
        ]
        for r in self.recoveries:
            verdict = (
                "not recovered"
                if r.recovery_s is None
                else ("ok" if r.recovery_s <= r.goal_s else "over goal")
            )
            lines.append(
                f"{r.fault:<16} {r.target:<10} {r.at_s:6.1f} {r.down_s:8.1f} "
                f"{_fmt(r.flow_s):>8} {_fmt(r.drained_s):>11} {_fmt(r.recovery_s):>12} "
                f"{r.goal_s:8.0f}  {verdict}"
                + (f" (backlog {r.backlog_at_fault} at fault)" if r.backlog_at_fault else "")
            )
        by_worker = Counter(e.worker for e in self.self_exits)
        lines.append(
            f"\nworker self-exits: {len(self.self_exits)}"
            + (
                f" ({', '.join(f'{w}: {n}' for w, n in sorted(by_worker.items()))})"
                if by_worker
                else ""
            )
            + f"; SIGKILLs by the run: {self.kills}"
        )
        reasons = Counter(e.last_error.split(":", 1)[0] for e in self.self_exits)
        if reasons:
            lines.append("  by reason: " + ", ".join(f"{r} {n}" for r, n in reasons.most_common()))
        for e in self.self_exits[:examples]:
            lines.append(
                f"  {e.worker} rc={e.returncode} at {e.at_s:.1f}s during {e.during}: {e.last_error}"
            )
        if len(self.self_exits) > examples:
            lines.append(f"  … and {len(self.self_exits) - examples} more")
        for worker, markers in sorted(self.log_markers.items()):
            shown = ", ".join(f"{name} {count}" for name, count in markers.items() if count)
            if shown:
                lines.append(f"  {worker} log: {shown}")
        lines.extend(f"note: {note}" for note in self.notes)
        lines.append("\ntotals: " + ", ".join(f"{k} {v}" for k, v in self.totals.items()))
        lines.append(f"run: {self.duration_s:.0f}s")
        counts = self.problem_counts()
        lines.append(
            f"\nproblems: {sum(counts.values())}"
            + (f" ({', '.join(f'{k}: {v}' for k, v in counts.items())})" if counts else "")
        )
        for check in counts:
            found = [p for p in self.problems if p.check == check]
            lines.append(f"[{check}]")
            for problem in found[:examples]:
                lines.append(f"  - {problem.message}")
            if len(found) > examples:
                lines.append(f"  … and {len(found) - examples} more")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# --- The flood ---------------------------------------------------------------------------------


@dataclass
class Planned:
    """One record to publish, ``at`` seconds after the flood starts."""

    at: float
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    request_id: str | None  # accepted requests only
    poison: str | None


@dataclass
class Sent:
    planned: Planned
    partition: int
    offset: int
    acked_at: float
    rank: int  # 1 for the first acknowledged record of its request_id, 2 for its duplicate, …


def plan_flood(
    users: Sequence[str], ghosts: Sequence[str], *, duration_s: float, seed_value: int
) -> list[Planned]:
    """The requests of a run, timed: every user migrated, plus the mix that makes faults bite.

    Per user: a migrate; 3 % instead [rollback, migrate] back to back (never migrated before);
    5 % a dry-run migrate before and a dry-run rollback after; 10 % a rollback later (2 in 10 of
    those migrate again after); 5 % one record re-published with the same request_id; 1 %
    poison records of every kind. Users not in the legacy table ("ghosts") get requests too.
    Back-to-back records of a user tend to share a batch, which is where order bugs live.
    """
    rng = random.Random(seed_value)
    plan: list[Planned] = []

    def add(
        at: float,
        key: bytes | None,
        value: bytes | None,
        rid: str | None,
        poison: str | None = None,
    ) -> None:
        plan.append(Planned(at, key, value, [], rid, poison))

    for user in [*users, *ghosts]:
        at = rng.uniform(0, duration_s)
        sequence: list[tuple[float, str, bool]] = []  # (gap before, action, dry_run)
        if rng.random() < 0.03:
            sequence += [(0.0, "rollback", False), (0.0, "migrate", False)]
        else:
            sequence.append((0.0, "migrate", False))
        if rng.random() < 0.05:
            sequence.insert(0, (0.0, "migrate", True))
            sequence.append((rng.choice((0.0, rng.uniform(0.2, 5))), "rollback", True))
        if rng.random() < 0.10:
            sequence.append((rng.choice((0.0, rng.uniform(1, 20))), "rollback", False))
            if rng.random() < 0.2:
                sequence.append((rng.uniform(0, 10), "migrate", False))
        published: list[Planned] = []
        for gap, action, dry in sequence:
            at += gap
            rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            add(at, user.encode(), _request_bytes(rid, user, action, dry), rid)
            published.append(plan[-1])
        if rng.random() < 0.05:
            again = rng.choice(published)
            later = rng.choice((0.0, rng.uniform(0.3, 15)))
            add(again.at + later, again.key, again.value, again.request_id)
    kinds = list(POISON_KINDS)
    for number in range(max(len(kinds) + 1, len(plan) // 100)):
        kind = "too_large" if number == 0 else kinds[number % len(kinds)]
        key, value = _poison(kind, rng.choice(users), rng.choice(users), rng)
        add(rng.uniform(0, duration_s), key, value, None, kind)
    # Stable sort: records planned for the same moment keep the order they were planned in.
    plan.sort(key=lambda planned: planned.at)
    for seq, planned in enumerate(plan):
        planned.headers.append((SEQ_HEADER, str(seq).encode()))
        if planned.poison is not None:
            planned.headers.append((POISON_HEADER, planned.poison.encode()))
    return plan


def _request_bytes(rid: str, user: str, action: str, dry_run: bool) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "request_id": rid,
            "user_id": user,
            "action": action,
            "dry_run": dry_run,
            "requested_by": "fault-run",
            "attempt": 1,
            "requested_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
    ).encode()


def _poison(
    kind: str, user: str, other: str, rng: random.Random
) -> tuple[bytes | None, bytes | None]:
    """A record that is not a valid request; the kinds cover each way a record can fail."""
    rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    valid = {"schema_version": 1, "request_id": rid, "user_id": user, "action": "migrate"}
    key = user.encode()
    if kind == "not_json":
        return key, b'{"request_id": "' + rid.encode() + b'", "user_id": '
    if kind == "not_utf8":
        return key, b'{"user_id": "\xff\xfe' + rid.encode() + b'"}'
    if kind == "not_object":
        return key, b'["migrate", "' + user.encode() + b'"]'
    if kind == "no_value":
        return key, None
    if kind == "missing_fields":
        return key, json.dumps({"schema_version": 1, "user_id": user, "action": "migrate"}).encode()
    if kind == "unknown_action":
        return key, json.dumps({**valid, "action": "delete"}).encode()
    if kind == "wrong_type":
        return key, json.dumps({**valid, "dry_run": "yes"}).encode()
    if kind == "bad_user_id":
        return b"bad user", json.dumps({**valid, "user_id": "bad user"}).encode()
    if kind == "key_mismatch":
        return other.encode() + b"-x", json.dumps(valid).encode()
    if kind == "no_key":
        return None, json.dumps(valid).encode()
    if kind == "too_large":
        return key, json.dumps({**valid, "reason": "x" * (1024 * 1024 + 10)}).encode()
    raise ValueError(kind)


# After the plan: (action, dry_run) of the fillers, real writes among them so that a fault
# late in the schedule still meets requests whose outcomes can lie.
_FILLERS = (("migrate", True), ("migrate", True), ("migrate", False), ("rollback", False))


class Flood:
    """Publishes the plan on time, then fillers until told to stop, and records the acks.

    The fillers keep records flowing while faults remain, so "outcomes flow again" can be
    measured for every fault. A send that fails is sent again (the topic, read back at the end,
    is the truth: a record that landed twice is simply a duplicate that needs two outcomes).
    """

    def __init__(
        self,
        stack: Stack,
        plan: list[Planned],
        fillers: Sequence[str],
        *,
        filler_per_s: float,
        log: Callable[[str], None],
        seed_value: int,
    ) -> None:
        self.stack = stack
        self.plan = plan
        self.fillers = list(fillers)
        self.filler_per_s = filler_per_s
        self.log = log
        self.rng = random.Random(seed_value + 1)
        self.sent: list[Sent] = []
        self.resends = 0
        self.lost: list[Planned] = []
        self.stop = asyncio.Event()
        self.planned_done = asyncio.Event()
        self._ranks: Counter[str] = Counter()
        self._tracking: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.stack.settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=30_000,
            max_request_size=topics.MAX_REQUEST_RECORD_BYTES,
        )
        await producer.start()
        try:
            started = time.monotonic()
            for planned in self.plan:
                if self.stop.is_set():
                    break
                delay = started + planned.at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._send(producer, planned)
            self.planned_done.set()
            seq = len(self.plan)
            while not self.stop.is_set():
                user = self.rng.choice(self.fillers)
                rid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
                action, dry = self.rng.choice(_FILLERS)
                value = _request_bytes(rid, user, action, dry)
                await self._send(
                    producer,
                    Planned(0, user.encode(), value, [(SEQ_HEADER, str(seq).encode())], rid, None),
                )
                seq += 1
                try:
                    await asyncio.wait_for(self.stop.wait(), timeout=1 / self.filler_per_s)
                except TimeoutError:
                    pass
            while self._tracking:
                await asyncio.gather(*list(self._tracking))
        finally:
            await producer.stop()

    async def _send(self, producer: AIOKafkaProducer, planned: Planned, attempt: int = 1) -> None:
        while True:
            try:
                future = await producer.send(
                    topics.REQUESTED, planned.value, key=planned.key, headers=planned.headers
                )
                break
            except KafkaError as exc:
                self.log(f"flood: send failed before queueing ({exc!r}); trying again")
                await asyncio.sleep(1)
        task = asyncio.ensure_future(self._track(producer, planned, future, attempt))
        self._tracking.add(task)
        task.add_done_callback(self._tracking.discard)

    async def _track(
        self, producer: AIOKafkaProducer, planned: Planned, future: Any, attempt: int
    ) -> None:
        try:
            metadata = await future
        except KafkaError as exc:
            if attempt >= 5:
                self.log(f"flood: record {planned.headers[0][1].decode()} not delivered: {exc!r}")
                self.lost.append(planned)
                return
            self.resends += 1
            await asyncio.sleep(1)
            await self._send(producer, planned, attempt + 1)
            return
        rank = 0
        if planned.request_id is not None:
            self._ranks[planned.request_id] += 1
            rank = self._ranks[planned.request_id]
        self.sent.append(Sent(planned, metadata.partition, metadata.offset, time.monotonic(), rank))


# --- Live view of the outcomes -----------------------------------------------------------------


class Tail:
    """Follows the outcome and dead-letter topics (read_committed) while the run goes on."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.answered: Counter[str] = Counter()
        self.dead: set[tuple[int, int]] = set()
        # When the tail saw each outcome, per partition (outcomes go to their request's
        # partition): the pauses of a partition's answers (topology_faults.longest_pause).
        self.arrivals: defaultdict[int, list[float]] = defaultdict(list)
        self.stop = asyncio.Event()
        self.started = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.stack.settings.kafka_bootstrap_servers,
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=topics.MAX_DEAD_LETTER_BYTES,
            fetch_max_bytes=4 * topics.MAX_DEAD_LETTER_BYTES,
        )
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            names = [*topics.OUTCOME_TOPICS.values(), topics.DEAD_LETTER]
            assigned = [
                TopicPartition(name, p)
                for name in names
                for p in sorted(consumer.partitions_for_topic(name) or ())
            ]
            if not assigned:
                raise FaultRunError("the outcome topics do not exist: did the workers start?")
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            self.started.set()
            while not self.stop.is_set():
                try:
                    batch = await consumer.getmany(timeout_ms=200)
                except KafkaError:
                    await asyncio.sleep(0.5)
                    continue
                if not batch:
                    continue
                for tp, records in batch.items():
                    for record in records:
                        self._note(tp.topic, record.value)
                        if tp.topic != topics.DEAD_LETTER:
                            self.arrivals[tp.partition].append(time.monotonic())
        finally:
            await consumer.stop()

    def _note(self, topic: str, value: bytes | None) -> None:
        try:
            document = json.loads(value or b"null")
        except ValueError:
            return
        if not isinstance(document, dict):
            return
        if topic == topics.DEAD_LETTER:
            original = document.get("original") or {}
            self.dead.add((int(original.get("partition", -1)), int(original.get("offset", -1))))
        elif "request_id" in document:
            self.answered[str(document["request_id"])] += 1

    def is_answered(self, sent: Sent) -> bool:
        if sent.planned.poison is not None:
            return (sent.partition, sent.offset) in self.dead
        assert sent.planned.request_id is not None
        return self.answered[sent.planned.request_id] >= sent.rank


# --- Workers under a supervisor ----------------------------------------------------------------


@dataclass
class Slot:
    """One worker of the group, restarted on the same port (same log, same data directory)."""

    name: str
    worker: Worker
    log_offset: int = 0
    held: bool = False  # being killed or restarted by the run itself: not a self-exit
    restarting: bool = False  # the supervisor restarts it in a moment
    # Held by whoever starts or kills the worker: never two processes on one port.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def start(self) -> None:
        path = self.worker.log_path
        self.log_offset = path.stat().st_size if path is not None and path.exists() else 0
        self.worker.start(wait=False)

    async def start_unless_alive(self) -> None:
        async with self.lock:
            if not self.alive():
                await asyncio.to_thread(self.start)

    def alive(self) -> bool:
        return self.worker.process is not None and self.worker.process.poll() is None

    def log_since_start(self) -> str:
        path = self.worker.log_path
        if path is None or not path.exists():
            return ""
        with path.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode("utf-8", errors="replace")

    def ready(self) -> bool:
        return self.alive() and "Worker ready" in self.log_since_start()

    def last_error(self) -> str:
        """Why the worker went away: the last exception its log names (shutdown noise skipped),
        or the one-line error of ``migrator worker``."""
        text = self.log_since_start()
        found = [m for m in _EXCEPTION_LINE.finditer(text) if not _NOISE.search(m.group(0))]
        if found:
            name, message = found[-1].group(1).rsplit(".", 1)[-1], found[-1].group(2)
            return f"{name}: {message}"[:200]
        lines = [line for line in text.splitlines() if line.startswith("migrator: ")]
        if lines:
            return f"StartupCheck: {lines[-1].removeprefix('migrator: ')}"[:200]
        return "(no exception in its log)"


# The last line of a traceback ("faust.exceptions.ConsistencyError: The persisted offset …").
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Fenced)): ?(.*)$", re.M)
_NOISE = re.compile(r"Event loop is closed|ConnectionRefusedError|CancelledError")


class Supervisor:
    """Restarts a worker 1 s after it exits on its own, and counts those exits."""

    def __init__(
        self, slots: list[Slot], clock: Callable[[], float], log: Callable[[str], None]
    ) -> None:
        self.slots = slots
        self.clock = clock
        self.log = log
        self.exits: list[SelfExit] = []
        self.current = "flood"
        self.stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        while not self.stop.is_set():
            for slot in self.slots:
                process = slot.worker.process
                if slot.held or slot.restarting or process is None or process.poll() is None:
                    continue
                exit_ = SelfExit(
                    slot.name,
                    round(self.clock(), 1),
                    int(process.returncode),
                    self.current,
                    slot.last_error(),
                )
                self.exits.append(exit_)
                self.log(
                    f"{slot.name} exited by itself (rc {exit_.returncode}) during "
                    f"{self.current}: {exit_.last_error}"
                )
                slot.restarting = True
                task = asyncio.ensure_future(self._restart(slot))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=0.2)
            except TimeoutError:
                pass
        for task in list(self._tasks):
            await task

    async def _restart(self, slot: Slot) -> None:
        try:
            await asyncio.sleep(1)
            if not self.stop.is_set():
                await slot.start_unless_alive()
        finally:
            slot.restarting = False


# --- The run ----------------------------------------------------------------------------------


async def run_faults(
    config: RunConfig, stack: Stack, *, log: Callable[[str], None] = print
) -> RunReport:
    """Seed, start the workers and the flood, inject every fault, then check everything."""
    run = _Run(config, stack, log)
    # Our own clients reconnect by themselves while a server is down; their log lines about it
    # would bury the run's output (the workers' logs are kept in their own files).
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return await run.execute()
    finally:
        run.stop_workers(grace_s=0)  # a no-op after a clean run; never leave a worker behind
        quiet.setLevel(level)


class _Run:
    def __init__(self, config: RunConfig, stack: Stack, log: Callable[[str], None]) -> None:
        self.config = config
        self.stack = stack
        self.t0 = time.monotonic()
        self._print = log
        self.report = RunReport(
            config={**asdict(config), "faults": list(config.faults)},
            stack_dir=str(stack.directory),
            started_at=datetime.now(UTC).isoformat(),
        )
        app_id = f"faults-{uuid.uuid4().hex[:6]}"
        self.app_id = app_id
        env = {
            "MIGRATOR_BATCH_SIZE": str(config.batch_size),
            "MIGRATOR_AUDIT_EVERY_S": str(AUDIT_EVERY_S),
            "MIGRATOR_PROCESSED_RETENTION_S": str(PRUNE_RETENTION_S),
            # The run plants failures on purpose (about 4 % of its outcomes, in bursts of
            # rollbacks of users not migrated): a failure budget would pause it for an operator
            # that never comes. Run control has its own tests (test_run_control.py).
            "MIGRATOR_FAILURE_BUDGET": "off",
        }
        if config.partitions is not None:
            env["MIGRATOR_TOPIC_PARTITIONS"] = str(config.partitions)
        self.env = env
        self.slots = [self.new_slot(n) for n in range(1, config.workers + 1)]
        self.supervisor = Supervisor(self.slots, self.clock, self.log)
        self.tail = Tail(stack)
        self.flood: Flood | None = None
        # The schedule's own randomness, from the run's seed: the faults' order, which worker,
        # when after the backlog drained, how soon a killed worker comes back.
        self.rng = random.Random(config.seed * 7919 + 1)

    def new_slot(self, number: int) -> Slot:
        name = f"worker-{number}"
        env = dict(self.env)
        if self.config.static_members:
            env["MIGRATOR_INSTANCE_ID"] = name
        app_id = self.slots[0].worker.app_id if getattr(self, "slots", None) else self.app_id
        return Slot(name, Worker(self.stack, app_id=app_id, extra_env=env))

    def clock(self) -> float:
        return time.monotonic() - self.t0

    def log(self, message: str) -> None:
        self._print(f"[{self.clock():6.1f}s] {message}")

    async def execute(self) -> RunReport:
        config = self.config
        prefix = f"f{uuid.uuid4().hex[:4]}-"
        users = await seed(
            self.stack, config.users, prefix=prefix, problem_ratio=config.problem_ratio
        )
        legacy_before = await _legacy_rows(self.stack)
        ghosts = [f"{prefix}ghost-{n:05d}" for n in range(max(3, config.users // 200))]
        plan = plan_flood(
            users, ghosts, duration_s=config.flood_duration_s(), seed_value=config.seed
        )
        clean = [u for u in users if not legacy_problem_codes(legacy_before[u])]
        self.flood = Flood(
            self.stack,
            plan,
            clean,
            filler_per_s=config.filler_per_s,
            log=self.log,
            seed_value=config.seed,
        )
        self.log(
            f"seeded {len(users)} users; {len(plan)} records planned over "
            f"{config.flood_duration_s():.0f}s; faults: {', '.join(config.faults)}"
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            for slot in self.slots:
                await asyncio.to_thread(slot.start)
            await self._wait_ready(120, strict=True)
            self.log("workers ready")
            tasks.append(asyncio.ensure_future(self.supervisor.run()))
            tasks.append(asyncio.ensure_future(self.tail.run()))
            await asyncio.wait_for(self.tail.started.wait(), timeout=60)
            tasks.append(asyncio.ensure_future(self.flood.run()))
            await asyncio.sleep(config.warmup_s)
            faults = list(config.faults)
            if not config.ordered:
                self.rng.shuffle(faults)
            self.log(f"seed {config.seed}: faults in this order: {', '.join(faults)}")
            for number, fault in enumerate(faults):
                self.supervisor.current = f"{fault} #{number + 1}"
                await self._settle()
                await asyncio.sleep(self.rng.uniform(0, 3))
                self._check_tasks(tasks)
                recovery = await self._inject(fault, number)
                self.report.recoveries.append(recovery)
                self.log(
                    f"{fault} on {recovery.target}: recovery "
                    f"{_fmt(recovery.recovery_s)}s (flow {_fmt(recovery.flow_s)}, "
                    f"drained {_fmt(recovery.drained_s)})"
                )
            self.supervisor.current = "drain"
            await self.flood.planned_done.wait()
            self.flood.stop.set()
            await tasks[2]
            unanswered = await self._wait_answered(config.final_timeout_s)
            self.log(f"flood done: {len(self.flood.sent)} records; {unanswered} unanswered")
            self.supervisor.current = "checks"
            await self._final_checks(users, ghosts, legacy_before)
        finally:
            # The supervisor first, so that nothing is restarted behind our back; then the
            # workers; then the flood and the tail. Sub-tasks may have been cancelled with us
            # (Ctrl-C, a test timeout): that must not cut the cleanup short.
            self.flood.stop.set()
            self.tail.stop.set()
            self.supervisor.stop.set()
            for slot in self.slots:
                slot.held = True
            if tasks:
                await self._finish(tasks[0])  # the supervisor
            await asyncio.to_thread(self.stop_workers)
            for task in tasks[1:]:
                await self._finish(task)
            self.report.self_exits = list(self.supervisor.exits)
            self.report.log_markers = {slot.name: _log_markers(slot) for slot in self.slots}
            self.report.duration_s = round(self.clock(), 1)
        return self.report

    async def _finish(self, task: asyncio.Task[None]) -> None:
        try:
            await asyncio.wait_for(task, timeout=60)
        except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - cleanup goes on
            self.log(f"background task ended with {exc!r}")

    def stop_workers(self, grace_s: float = 30) -> None:
        """SIGTERM every worker at once, SIGKILL what is left after ``grace_s``. Synchronous, so
        it also works as a last resort when the event loop is being torn down."""
        running = [s.worker.process for s in self.slots if s.alive()]
        for process in running:
            if process is not None:
                _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in running:
            if process is None:
                continue
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=30)

    def _check_tasks(self, tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise FaultRunError(f"a background task of the run failed: {task.exception()!r}")

    # -- waiting --

    async def _wait_ready(self, timeout_s: float, *, strict: bool = False) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(slot.ready() for slot in self.slots):
                return True
            if strict:
                for slot in self.slots:
                    if not slot.alive():
                        raise FaultRunError(
                            f"{slot.name} exited while starting:\n{slot.worker.log_tail()}"
                        )
            await asyncio.sleep(0.25)
        if strict:
            raise FaultRunError(f"workers not ready within {timeout_s:.0f}s")
        return False

    def _backlog(self, before: float) -> list[Sent]:
        assert self.flood is not None
        return [s for s in self.flood.sent if s.acked_at <= before and not self.tail.is_answered(s)]

    async def _settle(self) -> None:
        """Before a fault: every worker up and ready, and the backlog (nearly) answered."""
        deadline = time.monotonic() + self.config.settle_timeout_s
        if not await self._wait_ready(self.config.settle_timeout_s):
            self.log("workers not all ready before the next fault; injecting anyway")
        while time.monotonic() < deadline:
            if not self._backlog(time.monotonic() - 2):
                return
            await asyncio.sleep(0.25)
        self.log(f"backlog of {len(self._backlog(time.monotonic() - 2))} before the next fault")

    async def _wait_answered(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            left = len(self._backlog(time.monotonic()))
            if not left or time.monotonic() > deadline:
                return left
            await asyncio.sleep(0.5)

    # -- faults --

    async def _pick_worker(self, number: int) -> Slot:
        """A worker that is up (alternating), waiting a little for one if all are restarting."""
        deadline = time.monotonic() + 30
        candidates = [slot for slot in self.slots if slot.ready() and not slot.restarting]
        while not candidates and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            candidates = [slot for slot in self.slots if slot.ready() and not slot.restarting]
        candidates = candidates or [slot for slot in self.slots if slot.alive()] or self.slots
        return candidates[self.rng.randrange(len(candidates))]

    async def _inject(self, fault: str, number: int) -> Recovery:
        if fault in TOPOLOGY_FAULTS:
            from topology_faults import inject

            return await inject(self, fault, number)
        slot = await self._pick_worker(number) if fault in WORKER_FAULTS else None
        fault_at = time.monotonic()
        backlog = len(self._backlog(fault_at))
        reference: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        measuring = asyncio.ensure_future(self._measure(fault_at, reference))
        if slot is not None:
            target = slot.name
            reference.set_result(fault_at)
            down_s = await self._worker_fault(fault, slot)
        else:
            target = fault.split("_")[0]
            down_s = await self._server_fault(fault)
            reference.set_result(time.monotonic())
        flow_at, drained_at = await measuring
        ref = reference.result()
        flow = None if flow_at is None else max(0.0, flow_at - ref)
        drained = None if drained_at is None else max(0.0, drained_at - ref)
        recovery = None if flow is None or drained is None else max(flow, drained)
        return Recovery(
            fault,
            target,
            round(fault_at - self.t0, 1),
            round(down_s, 1),
            _round(flow),
            _round(drained),
            _round(recovery),
            RECOVERY_GOAL_S[fault],
            backlog,
        )

    async def _worker_fault(self, fault: str, slot: Slot) -> float:
        """SIGKILL and restart 1 s later, or SIGSTOP past the session timeout and SIGCONT (no
        restart: the worker must come back by itself; if it exits, the supervisor counts it)."""
        started = time.monotonic()
        async with slot.lock:
            process = slot.worker.process
            if fault == "worker_kill":
                slot.held = True
                try:
                    await asyncio.to_thread(slot.worker.kill, signal.SIGKILL)
                    self.report.kills += 1
                    await asyncio.sleep(self.rng.uniform(0.2, 2.0))
                    await asyncio.to_thread(slot.start)
                finally:
                    slot.held = False
                return time.monotonic() - started
            if process is None or process.poll() is not None:
                self.log(f"{slot.name} is not running: SIGSTOP skipped")
                return 0.0
            os.killpg(process.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(self.config.stop_s)
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGCONT)
        return time.monotonic() - started

    async def _server_fault(self, fault: str) -> float:
        started = time.monotonic()
        if fault == "redis_flush":
            client = redis.Redis.from_url(self.stack.env["REDIS_URL"])
            try:
                await asyncio.to_thread(client.flushall)
            finally:
                client.close()
            return 0.0
        name = fault.split("_")[0]
        await asyncio.to_thread(kill_server, self.stack, name)
        await asyncio.sleep(
            self.config.kafka_down_s if name == "kafka" else self.config.server_down_s
        )
        await asyncio.to_thread(restart_servers, self.stack)
        if server_pid(self.stack, name) is None:
            raise FaultRunError(f"{name} is not running after `stack up`")
        return time.monotonic() - started

    async def _measure(
        self, fault_at: float, reference: asyncio.Future[float]
    ) -> tuple[float | None, float | None]:
        """When outcomes flowed again, and when the backlog from before the fault was answered
        (monotonic times; None: not within the recovery timeout).

        "Flowing again" is per request partition: on every partition, the first record published
        after the reference moment has its answer. One partition is not enough: after a worker
        fault the other worker's partitions never stop, while the victim's stall until a
        rebalance hands them over.
        """
        assert self.flood is not None
        sent = self.flood.sent
        partitions = {s.partition for s in sent}
        pending = [s for s in sent if s.acked_at <= fault_at]
        firsts: dict[int, Sent] = {}
        flowing: set[int] = set()
        scanned = 0
        drained_at: float | None = None
        flow_at: float | None = None
        while True:
            now = time.monotonic()
            if drained_at is None:
                pending = [s for s in pending if not self.tail.is_answered(s)]
                if not pending:
                    drained_at = now
            if reference.done():
                ref = reference.result()
                for record in sent[scanned:]:
                    if record.acked_at > ref and record.partition not in firsts:
                        firsts[record.partition] = record
                scanned = len(sent)
                flowing |= {p for p, s in firsts.items() if self.tail.is_answered(s)}
                if flow_at is None and flowing >= partitions:
                    flow_at = now
                if flow_at is not None and drained_at is not None:
                    return flow_at, drained_at
                if now - ref > self.config.recovery_timeout_s:
                    return flow_at, drained_at
            await asyncio.sleep(0.1)

    # -- the checks --

    async def _final_checks(
        self, users: list[str], ghosts: list[str], legacy_before: dict[str, LegacyRow]
    ) -> None:
        stats_before = await self._wait_mirror_healed()
        observed = await observe(self.stack)
        stats = await self._stats_settled(expected_counters(observed))
        self.report.stats = stats
        problems = check_all(
            observed, users=users, ghosts=ghosts, legacy_before=legacy_before, stats=stats
        )
        if stats_before is not None:
            problems.append(Problem("c.redis_pending", stats_before))
        audit_found = await self._check_audit(problems)
        self.report.problems = problems
        assert self.flood is not None
        self.report.totals = {
            "published": len(observed.requests),
            "accepted": sum(1 for r in observed.requests if r.poison is None),
            "poison": sum(1 for r in observed.requests if r.poison is not None),
            "duplicates": sum(len(v) - 1 for v in observed.by_request_id().values()),
            "dry_runs": sum(1 for r in observed.requests if r.poison is None and r.dry_run),
            "resent_by_producer": self.flood.resends,
            "undelivered_by_producer": len(self.flood.lost),
            **{
                f"outcomes_{k}": v
                for k, v in sorted(Counter(o.kind for o in observed.outcomes).items())
            },
            "dead_letters": len(observed.dead_letters),
            "sessions": len(observed.sessions),
            "audit_findings": audit_found,
        }

    async def _check_audit(self, problems: Problems) -> dict[str, int]:
        """(e) The service sees its own promise: once its audit has judged everything, its
        findings are exactly the records the run found unanswered or answered twice."""
        missing = {p.message for p in problems if p.check == "a.missing"}
        twice = {p.message for p in problems if p.check == "a.duplicate"}
        await asyncio.sleep(3 * AUDIT_EVERY_S + 2)  # two rounds, the second past every commit
        body: Any = None
        for slot in self.slots:
            status, body = await asyncio.to_thread(
                slot.worker.get, "/api/v1/onboarding/migration/audit"
            )
            if status == 200:
                break
        else:
            problems.add("e.audit", f"no worker answered GET audit: {body}")
            return {}
        found = Counter(f["kind"] for f in body["findings"])
        # The run counts duplicates per request id, the audit per record: compare presence.
        if found["unanswered"] != len(missing) or bool(found["duplicated"]) != bool(twice):
            problems.add(
                "e.audit",
                f"the answer audit found {dict(found)} ({body['findings'][:5]}), the run "
                f"{len(missing)} unanswered record(s) and {len(twice)} request(s) answered twice",
            )
        return dict(found)

    async def _wait_mirror_healed(self, timeout_s: float = 120) -> str | None:
        """Wait until every worker says no Redis mirror write is pending (a missing field is 0)."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            pending = {}
            for slot in self.slots:
                status, body = await asyncio.to_thread(_get_stats, slot.worker)
                value = body.get("mirror_pending", 0) if status == 200 else "unavailable"
                pending[slot.name] = value
            last = pending
            if all(v == 0 for v in pending.values()):
                return None
            await asyncio.sleep(1)
        return f"mirror_pending did not reach 0 within {timeout_s:.0f}s: {last}"

    async def _stats_settled(self, expected: dict[str, Any]) -> dict[str, Any]:
        """Every worker's stats, once they equal the topics or stop changing for 10 s."""
        answers: dict[str, Any] = {}
        changed = time.monotonic()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            now: dict[str, Any] = {}
            for slot in self.slots:
                status, body = await asyncio.to_thread(_get_stats, slot.worker)
                now[slot.name] = _counters_of(body) if status == 200 else {"error": body}
            if all(v == expected for v in now.values()):
                return now
            if now != answers:
                answers, changed = now, time.monotonic()
            elif time.monotonic() - changed > 10:
                break
            await asyncio.sleep(1)
        return answers


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _get_stats(worker: Worker) -> tuple[int, Any]:
    try:
        status, body = worker.get(STATS_PATH, timeout=10)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    return status, body if status == 200 and isinstance(body, dict) else str(body)[:200]


def _counters_of(body: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {name: int(body.get(name, 0)) for name in COUNTER_FIELDS}
    result["failed_by_code"] = {
        k: int(v) for k, v in sorted((body.get("failed_by_code") or {}).items()) if int(v)
    }
    return result


def _log_markers(slot: Slot) -> dict[str, int]:
    """How often the worker log names the failure modes the notes describe (for the report)."""
    path = slot.worker.log_path
    text = path.read_text(errors="replace") if path is not None and path.exists() else ""
    return {
        "ConsistencyError": text.count("ConsistencyError"),
        "ProducerFenced": text.count("ProducerFenced"),
        "gap-guard re-exec": text.count("were lost inside the stream"),
        "begin_transaction error": text.count("Exception in begin_transaction"),
        "Worker ready": text.count("Worker ready"),
        "pruning rounds that deleted": text.count("answers of processed_records"),
    }


# --- What the topics and databases hold at the end ---------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    poison: str | None
    request_id: str | None
    user_id: str | None
    action: str
    dry_run: bool

    @property
    def position(self) -> tuple[int, int]:
        return self.partition, self.offset

    def describe(self) -> str:
        what = f"{'dry-run ' if self.dry_run else ''}{self.action}"
        return f"{what} {self.request_id} of {self.user_id} at {self.partition}:{self.offset}"


@dataclass(frozen=True)
class SeenOutcome:
    topic: str
    partition: int
    offset: int
    value: dict[str, Any]
    headers: dict[str, bytes]

    @property
    def request_id(self) -> str:
        return str(self.value.get("request_id"))

    @property
    def kind(self) -> str:
        return str(self.value.get("outcome"))

    @property
    def dry_run(self) -> bool:
        return bool(self.value.get("dry_run"))

    @property
    def already_done(self) -> bool:
        return bool(self.value.get("already_done"))

    @property
    def code(self) -> str | None:
        error = self.value.get("error")
        return str(error.get("code")) if isinstance(error, dict) else None

    @property
    def source(self) -> tuple[int, int] | None:
        """The request's position from the failure headers (``…original-partition/offset``)."""
        found: dict[str, int] = {}
        for name, raw in self.headers.items():
            for suffix in ("original-partition", "original-offset"):
                if name.endswith(suffix):
                    try:
                        found[suffix] = int(raw.decode())
                    except ValueError:
                        pass
        if len(found) == 2:
            return found["original-partition"], found["original-offset"]
        return None

    def short(self) -> str:
        flags = "".join(
            (" dry-run" if self.dry_run else "", " already_done" if self.already_done else "")
        )
        return f"{self.kind}{'/' + self.code if self.code else ''}{flags}"

    def describe(self) -> str:
        flags = "".join(
            (" dry-run" if self.dry_run else "", " already_done" if self.already_done else "")
        )
        code = f"/{self.code}" if self.code else ""
        return (
            f"{self.kind}{code}{flags} (event {self.value.get('event_id')}, "
            f"{self.topic}@{self.partition}:{self.offset}, "
            f"processed_at {self.value.get('processed_at')})"
        )


@dataclass
class Observed:
    requests: list[RequestRecord]
    outcomes: list[SeenOutcome]
    dead_letters: list[SeenOutcome]
    sessions: dict[str, tuple[str, str, float]]  # user → (session_id, status, completion %)
    legacy: dict[str, LegacyRow]
    committed: set[str]  # request ids the audit log records as succeeded (not dry runs)
    redis_users: dict[str, str]  # user → session id
    redis_sessions: dict[str, dict[str, Any] | None]  # session id → document

    def by_request_id(self) -> dict[str, list[RequestRecord]]:
        found: dict[str, list[RequestRecord]] = defaultdict(list)
        for record in self.requests:
            if record.poison is None and record.request_id is not None:
                found[record.request_id].append(record)
        return found


# (workspace_id, status, current_step, completed_steps, answers JSON text, updated_at)
LegacyRow = tuple[Any, ...]


async def _legacy_rows(stack: Stack) -> dict[str, LegacyRow]:
    conn = await asyncpg.connect(stack.env["DATABASE_URL"])
    try:
        rows = await conn.fetch(
            "SELECT user_id, workspace_id, status, current_step, completed_steps, "
            "answers::text AS answers, updated_at FROM legacy_onboarding_status"
        )
    finally:
        await conn.close()
    return {row["user_id"]: tuple(row)[1:] for row in rows}


async def observe(stack: Stack) -> Observed:
    """Everything committed on the public topics, and what PostgreSQL and Redis hold."""
    requests = [_request_record(r) async for r in read_records(stack.settings, topics.REQUESTED)]
    outcomes = [
        SeenOutcome(
            r.topic,
            r.partition,
            r.offset,
            _json_object(r.value),
            {k: v or b"" for k, v in r.headers},
        )
        async for r in read_records(stack.settings, *topics.OUTCOME_TOPICS.values())
    ]
    dead = [
        SeenOutcome(
            r.topic,
            r.partition,
            r.offset,
            _json_object(r.value),
            {k: v or b"" for k, v in r.headers},
        )
        async for r in read_records(stack.settings, topics.DEAD_LETTER)
    ]
    conn = await asyncpg.connect(stack.env["DATABASE_URL"])
    try:
        sessions = {
            row["user_id"]: (
                str(row["session_id"]),
                row["status"],
                float(row["completion_percentage"]),
            )
            for row in await conn.fetch(
                "SELECT user_id, session_id, status, completion_percentage FROM onboarding_sessions"
            )
        }
        committed = {
            str(row["request_id"])
            for row in await conn.fetch(
                "SELECT DISTINCT request_id FROM onboarding_migration_log "
                "WHERE outcome IN ('migrated', 'rolled_back')"
            )
        }
    finally:
        await conn.close()
    legacy = await _legacy_rows(stack)
    users, docs = await asyncio.to_thread(_redis_state, stack.env["REDIS_URL"])
    return Observed(requests, outcomes, dead, sessions, legacy, committed, users, docs)


def _json_object(value: bytes | None) -> dict[str, Any]:
    try:
        document = json.loads(value or b"null")
    except ValueError:
        return {"_unparsable": repr(value)[:200]}
    return document if isinstance(document, dict) else {"_unparsable": repr(value)[:200]}


def _request_record(record: Any) -> RequestRecord:
    headers = tuple((name, raw or b"") for name, raw in record.headers)
    names = dict(headers)
    poison = names[POISON_HEADER].decode() if POISON_HEADER in names else None
    request: dict[str, Any] = {}
    if poison is None:
        request = _json_object(record.value)
    return RequestRecord(
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=headers,
        poison=poison,
        request_id=str(request["request_id"]) if "request_id" in request else None,
        user_id=str(request["user_id"]) if "user_id" in request else None,
        action=str(request.get("action", "migrate")),
        dry_run=bool(request.get("dry_run", False)),
    )


def _redis_state(url: str) -> tuple[dict[str, str], dict[str, dict[str, Any] | None]]:
    client = redis.Redis.from_url(url)
    try:
        users: dict[str, str] = {}
        docs: dict[str, dict[str, Any] | None] = {}
        for prefix, target in (("onboarding:user:", users), ("onboarding:session:", docs)):
            keys = [bytes(k) for k in client.scan_iter(match=prefix + "*", count=2000)]
            for start in range(0, len(keys), 1000):
                chunk = keys[start : start + 1000]
                for key, value in zip(chunk, client.mget(chunk), strict=True):
                    name = key.decode()[len(prefix) :]
                    if target is users:
                        users[name] = value.decode() if isinstance(value, bytes) else ""
                    else:
                        docs[name] = _json_object(value) if isinstance(value, bytes) else None
        return users, docs
    finally:
        client.close()


# --- The checks (pure functions of what was observed) ------------------------------------------


def legacy_problem_codes(row: LegacyRow | None) -> frozenset[str]:
    """The error codes a migrate of this never-migrated legacy row may fail with (contract §6);
    empty when the row is fine. ``None`` (no row) is ``user_not_found``."""
    if row is None:
        return frozenset({"user_not_found"})
    _, status, _, completed_steps, answers_text, _ = row
    codes: set[str] = set()
    if status == "migrated":
        codes.add("invalid_legacy_data")
    if set(completed_steps or ()) - LEGACY_STEPS:
        codes.add("unknown_legacy_step")
    if status not in PLANNABLE:
        codes.add("invalid_legacy_data")
    answers = json.loads(answers_text or "{}")
    for key in TEXT_ANSWERS:
        if answers.get(key) is not None and not isinstance(answers[key], str):
            codes.add("invalid_legacy_data")
    for key in LIST_ANSWERS:
        value = answers.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            codes.add("invalid_legacy_data")
    return frozenset(codes)


@dataclass(frozen=True)
class Expected:
    kind: str
    already_done: bool = False
    codes: frozenset[str] = frozenset()

    def matches(self, outcome: SeenOutcome, record: RequestRecord) -> bool:
        if (outcome.kind, outcome.already_done, outcome.dry_run) != (
            self.kind,
            self.already_done,
            record.dry_run,
        ):
            return False
        return self.kind != "failed" or outcome.code in self.codes

    def describe(self, record: RequestRecord) -> str:
        codes = f"/{'|'.join(sorted(self.codes))}" if self.codes else ""
        flags = "".join(
            (" dry-run" if record.dry_run else "", " already_done" if self.already_done else "")
        )
        return f"{self.kind}{codes}{flags}"


@dataclass
class UserModel:
    """A user as the contract sees it: migrated or not, and which request ids took effect."""

    problem_codes: frozenset[str]
    migrated: bool = False
    ledger: dict[str, str] = field(default_factory=dict)
    session_id: str | None = None  # of the migrate that took effect last (None: unknown)

    def expect(self, record: RequestRecord) -> Expected:
        assert record.request_id is not None
        if record.request_id in self.ledger:
            return Expected(self.ledger[record.request_id], already_done=True)
        if record.action == "rollback":
            if not self.migrated:
                return Expected("failed", codes=frozenset({"not_migrated"}))
            return Expected("rolled_back")
        if self.migrated:
            return Expected("migrated", already_done=True)
        if self.problem_codes:
            return Expected("failed", codes=self.problem_codes)
        return Expected("migrated")

    def apply(self, record: RequestRecord, expected: Expected, outcome: SeenOutcome | None) -> None:
        """The expected effect of a record that took effect (never a dry run or a failure)."""
        assert record.request_id is not None
        if record.dry_run or expected.kind == "failed" or record.request_id in self.ledger:
            return
        self.ledger[record.request_id] = expected.kind
        if expected.kind == "rolled_back":
            self.migrated, self.session_id = False, None
        elif not expected.already_done:
            self.migrated = True
            self.session_id = None if outcome is None else outcome.value.get("session_id")


def assign_outcomes(
    records: Sequence[RequestRecord], outcomes: Sequence[SeenOutcome]
) -> tuple[dict[tuple[int, int], SeenOutcome], list[SeenOutcome], list[str]]:
    """Pair the outcomes of one request_id with its records: failed outcomes by the position
    their headers name, the rest in processing order. Returns the pairs, the outcomes left over
    (duplicates) and notes about headers that name no record of this request."""
    pairs: dict[tuple[int, int], SeenOutcome] = {}
    extra: list[SeenOutcome] = []
    notes: list[str] = []
    positions = {r.position for r in records}
    rest: list[SeenOutcome] = []
    for outcome in outcomes:
        source = outcome.source
        if outcome.kind == "failed" and source is not None:
            if source not in positions:
                notes.append(
                    f"{outcome.describe()} names source {source[0]}:{source[1]}, "
                    "which is not a record of this request"
                )
                rest.append(outcome)
            elif source in pairs:
                extra.append(outcome)
            else:
                pairs[source] = outcome
        else:
            rest.append(outcome)
    # An event_id seen twice is one outcome committed twice: pair the first copy only.
    event_ids = {str(o.value.get("event_id")) for o in pairs.values()}
    unique: list[SeenOutcome] = []
    for outcome in rest:
        event_id = str(outcome.value.get("event_id"))
        (extra if event_id in event_ids else unique).append(outcome)
        event_ids.add(event_id)
    unique.sort(key=lambda o: (str(o.value.get("processed_at")), o.already_done))
    for record in records:
        if record.position not in pairs and unique:
            pairs[record.position] = unique.pop(0)
    return pairs, extra + unique, notes


class Problems(list[Problem]):
    """The findings of the checks, in the order found."""

    def add(self, check: str, message: str) -> None:
        self.append(Problem(check, message))


def check_all(
    observed: Observed,
    *,
    users: Sequence[str],
    ghosts: Sequence[str],
    legacy_before: Mapping[str, LegacyRow],
    stats: Mapping[str, Any],
) -> Problems:
    """Every check of the run, on what was observed once the service had answered everything."""
    problems = Problems()
    pairs = _check_exactly_once(observed, problems)
    _check_dead_letters(observed, problems)
    models = _check_model(observed, pairs, legacy_before, problems)
    _check_state(observed, models, [*users, *ghosts], legacy_before, problems)
    _check_redis(observed, problems)
    _check_counters(observed, stats, problems)
    return problems


def _check_exactly_once(
    observed: Observed, problems: Problems
) -> dict[tuple[int, int], SeenOutcome]:
    """(a) exactly one outcome per accepted record, on the topic of its kind.

    Records are told apart by request_id and position: a request_id published twice is two
    records and needs two outcomes. Returns each record's outcome, by position.
    """
    by_request = observed.by_request_id()
    outcomes: dict[str, list[SeenOutcome]] = defaultdict(list)
    for outcome in observed.outcomes:
        if topics.OUTCOME_TOPICS.get(outcome.kind) != outcome.topic:
            problems.add("a.misplaced", f"{outcome.describe()} is on {outcome.topic}")
        outcomes[outcome.request_id].append(outcome)
    for request_id, found in outcomes.items():
        if request_id not in by_request:
            problems.add(
                "a.misplaced",
                f"outcome for request {request_id}, which no accepted "
                f"record carries: {found[0].describe()}",
            )
    all_pairs: dict[tuple[int, int], SeenOutcome] = {}
    for request_id, records in by_request.items():
        mine = outcomes.get(request_id, [])
        pairs, extra, notes = assign_outcomes(records, mine)
        all_pairs.update(pairs)
        for note in notes:
            problems.add("a.misplaced", f"request {request_id}: {note}")
        for record in records:
            if record.position not in pairs:
                problems.add("a.missing", f"no outcome for {record.describe()}")
        if extra:
            ids = Counter(str(o.value.get("event_id")) for o in mine)
            twice = [event_id for event_id, n in ids.items() if n > 1]
            problems.add(
                "a.duplicate",
                (
                    f"{records[0].describe()} ({len(records)} record(s)) has {len(mine)} outcomes: "
                    + "; ".join(o.describe() for o in mine)
                    + (f" — the same event_id {', '.join(twice)} committed twice" if twice else "")
                ),
            )
    return all_pairs


def _check_dead_letters(observed: Observed, problems: Problems) -> None:
    """(a) every poison record dead-lettered exactly once, its bytes and headers unaltered."""
    by_position = {r.position: r for r in observed.requests}
    seen: Counter[tuple[int, int]] = Counter()
    for letter in observed.dead_letters:
        original = letter.value.get("original")
        if not isinstance(original, dict):
            problems.add("a.dead_letter", f"dead letter without original: {letter.describe()}")
            continue
        position = (int(original.get("partition", -1)), int(original.get("offset", -1)))
        record = by_position.get(position)
        reason = letter.value.get("reason")
        if record is None:
            problems.add("a.dead_letter", f"dead letter names {position}: no such request record")
            continue
        if record.poison is None:
            problems.add("a.dead_letter", f"accepted {record.describe()} dead-lettered ({reason})")
            continue
        seen[position] += 1
        wrong = [
            name
            for name, got, want in (
                ("key", original.get("key_b64"), _b64(record.key)),
                ("value", original.get("value_b64"), _b64(record.value)),
                ("headers", original.get("headers"), [[n, _b64(v)] for n, v in record.headers]),
            )
            if got != want
        ]
        if wrong:
            problems.add(
                "a.dead_letter",
                f"dead letter of {record.poison} at {position} altered its {', '.join(wrong)}",
            )
        expected_reason = POISON_KINDS.get(record.poison)
        if expected_reason is not None and reason != expected_reason:
            problems.add(
                "a.dead_letter",
                f"{record.poison} at {position} dead-lettered as "
                f"{reason!r}, not {expected_reason!r}",
            )
    for record in observed.requests:
        if record.poison is not None and seen[record.position] != 1:
            problems.add(
                "a.dead_letter",
                f"poison record {record.poison} at {record.position} "
                f"dead-lettered {seen[record.position]} times, not once",
            )


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data is not None else None


def _check_model(
    observed: Observed,
    pairs: Mapping[tuple[int, int], SeenOutcome],
    legacy_before: Mapping[str, LegacyRow],
    problems: Problems,
) -> dict[str, UserModel]:
    """(b) each user's outcomes, replayed in publish order through the contract's model.

    A retryable failure (database/cache unavailable) is allowed only when PostgreSQL holds no
    effect for its request. When the audit log records the request as succeeded (and no later
    record of the same request_id did it), the outcome lied; the model then follows PostgreSQL,
    the source of truth, so that one lie is reported once rather than as a cascade.
    """
    by_user: dict[str, list[RequestRecord]] = defaultdict(list)
    for record in observed.requests:
        if record.poison is None and record.user_id is not None:
            by_user[record.user_id].append(record)
    by_request = observed.by_request_id()
    models: dict[str, UserModel] = {}
    for user, records in by_user.items():
        records.sort(key=lambda r: r.offset)  # one user, one partition: offsets are its order
        model = models[user] = UserModel(legacy_problem_codes(legacy_before.get(user)))
        history: list[str] = []
        mismatches: list[str] = []
        for record in records:
            assert record.request_id is not None
            outcome = pairs.get(record.position)
            expected = model.expect(record)
            history.append(
                f"{record.offset}:{'dry-' if record.dry_run else ''}{record.action}"
                f"→{outcome.short() if outcome else 'nothing'}"
            )
            committed = record.request_id in observed.committed and not record.dry_run
            if outcome is None:
                if committed:
                    model.apply(record, expected, None)
                continue
            if outcome.kind == "failed" and outcome.code in RETRYABLE_CODES:
                later = [
                    pairs[r.position]
                    for r in by_request[record.request_id]
                    if r.offset > record.offset and r.position in pairs
                ]
                done_later = any(o.kind != "failed" and not o.already_done for o in later)
                if committed and not done_later:
                    problems.add(
                        "b.retryable_lie",
                        (
                            f"{record.describe()}: outcome {outcome.describe()}, but PostgreSQL "
                            "committed it (the audit log records it as succeeded); expected "
                            f"{expected.describe(record)}"
                        ),
                    )
                    model.apply(record, expected, None)
                continue
            if not expected.matches(outcome, record):
                mismatches.append(
                    f"{record.describe()}: expected {expected.describe(record)}, "
                    f"got {outcome.describe()}"
                )
            elif (
                outcome.kind == "rolled_back"
                and not (record.dry_run or outcome.already_done)
                and outcome.value.get("matches_snapshot") is not True
            ):
                mismatches.append(
                    f"{record.describe()}: rolled back, but matches_snapshot is "
                    f"{outcome.value.get('matches_snapshot')!r}"
                )
            model.apply(record, expected, outcome)
        if mismatches:
            more = f" (+{len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
            problems.add(
                "b.order",
                f"{user}: {mismatches[0]}{more}; the user's requests "
                f"(offset:action→outcome): {', '.join(history[:12])}",
            )
    return models


_LEGACY_COLUMNS = (
    "workspace_id",
    "status",
    "current_step",
    "completed_steps",
    "answers",
    "updated_at",
)


def _check_state(
    observed: Observed,
    models: Mapping[str, UserModel],
    users: Sequence[str],
    legacy_before: Mapping[str, LegacyRow],
    problems: Problems,
) -> None:
    """(b) the model's final state is PostgreSQL's: a session iff migrated, and the legacy row
    says 'migrated' when migrated, else is exactly what it was before the run."""
    for user in users:
        model = models.get(user) or UserModel(legacy_problem_codes(legacy_before.get(user)))
        session = observed.sessions.get(user)
        if model.migrated != (session is not None):
            said = "migrated" if model.migrated else "not migrated"
            holds = f"session {session[0]}" if session else "no session"
            problems.add("b.state", f"{user}: the outcomes say {said}, PostgreSQL holds {holds}")
            continue
        if session is not None and model.session_id and session[0] != model.session_id:
            problems.add(
                "b.state",
                f"{user}: session {session[0]} in PostgreSQL, the migrated "
                f"outcome named {model.session_id}",
            )
        before, after = legacy_before.get(user), observed.legacy.get(user)
        if before is None or after is None:
            if before != after:
                problems.add("b.state", f"{user}: legacy row {'appeared' if after else 'gone'}")
        elif model.migrated and after[1] != "migrated":
            problems.add("b.state", f"{user}: migrated, but the legacy status is {after[1]!r}")
        elif not model.migrated and after != before:
            changed = [c for c, a, b in zip(_LEGACY_COLUMNS, after, before, strict=True) if a != b]
            problems.add(
                "b.state",
                f"{user}: not migrated, but the legacy row differs from "
                f"before the run in {', '.join(changed)}",
            )


def _check_redis(observed: Observed, problems: Problems) -> None:
    """(c) Redis mirrors PostgreSQL exactly once it is healed (no missing, no stale keys)."""
    live = set()
    for user, (session_id, status, percentage) in sorted(observed.sessions.items()):
        live.add(session_id)
        pointer = observed.redis_users.get(user)
        if pointer != session_id:
            check = "c.redis_missing" if pointer is None else "c.redis_differs"
            problems.add(
                check,
                f"{user}: onboarding:user:{user} is {pointer!r}, PostgreSQL "
                f"has session {session_id}",
            )
        document = observed.redis_sessions.get(session_id)
        if document is None:
            problems.add(
                "c.redis_missing",
                f"{user}: onboarding:session:{session_id} is missing (or not JSON)",
            )
            continue
        stored = document.get("completion_percentage")
        same_percentage = isinstance(stored, int | float) and abs(stored - percentage) < 0.005
        if document.get("status") != status or not same_percentage:
            problems.add(
                "c.redis_differs",
                f"{user}: Redis session says {document.get('status')}/"
                f"{stored}, PostgreSQL {status}/{percentage}",
            )
    for user, pointer in sorted(observed.redis_users.items()):
        if user not in observed.sessions:
            problems.add(
                "c.redis_stale",
                f"onboarding:user:{user} → {pointer} left, but the user has no session",
            )
    for session_id in sorted(set(observed.redis_sessions) - live):
        problems.add(
            "c.redis_stale",
            f"onboarding:session:{session_id} left, but PostgreSQL has no such session",
        )


def expected_counters(observed: Observed) -> dict[str, Any]:
    """Contract §9 computed from the topics: a dry-run outcome counts in dry_run only; an
    already_done outcome counts in already_done and in its own outcome's counter."""
    counts: dict[str, Any] = dict.fromkeys(COUNTER_FIELDS, 0)
    by_code: Counter[str] = Counter()
    counts["requested"] = sum(1 for r in observed.requests if r.poison is None)
    counts["dead_lettered"] = len(observed.dead_letters)
    for outcome in observed.outcomes:
        if outcome.dry_run:
            counts["dry_run"] += 1
            continue
        if outcome.kind in counts:
            counts[outcome.kind] += 1
        if outcome.already_done:
            counts["already_done"] += 1
        if outcome.code:
            by_code[outcome.code] += 1
    counts["failed_by_code"] = dict(sorted(by_code.items()))
    return counts


def _check_counters(observed: Observed, stats: Mapping[str, Any], problems: Problems) -> None:
    """(d) every worker's stats equal what the topics show (any worker answers the same)."""
    expected = expected_counters(observed)
    if not stats:
        problems.add("d.counters", "no worker answered stats")
    for worker, answer in sorted(stats.items()):
        if "error" in answer:
            problems.add("d.counters", f"{worker}: stats unavailable: {answer['error']}")
            continue
        diffs = [
            f"{name} {answer.get(name)} (topics: {expected[name]})"
            for name in (*COUNTER_FIELDS, "failed_by_code")
            if answer.get(name) != expected[name]
        ]
        if diffs:
            problems.add("d.counters", f"{worker}: " + "; ".join(diffs))


def describe_failures(report: RunReport, *, max_recovery_s: float) -> list[str]:
    """What the CI test refuses: problems, worker self-exits, unrecovered or very slow faults."""
    failures = []
    counts = report.problem_counts()
    if counts:
        failures.append(
            f"{sum(counts.values())} check problem(s): "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
        )
    if report.self_exits:
        shown = "; ".join(
            f"{e.worker} rc={e.returncode} during {e.during}: {e.last_error}"
            for e in report.self_exits[:5]
        )
        failures.append(f"{len(report.self_exits)} worker self-exit(s): {shown}")
    for r in report.recoveries:
        if r.recovery_s is None or r.recovery_s > max_recovery_s:
            failures.append(
                f"{r.fault} on {r.target} at {r.at_s}s: recovery "
                f"{_fmt(r.recovery_s)}s (bound {max_recovery_s:.0f}s)"
            )
    missing = sorted(set(report.config.get("faults", ())) - {r.fault for r in report.recoveries})
    if missing:
        failures.append(f"faults not injected: {', '.join(missing)}")
    return failures
