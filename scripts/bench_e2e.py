"""``make bench``: the service measured end to end, the way its producers and consumers see it.

Why end to end: the batch applier alone (``--core``) says how fast PostgreSQL takes batches, but
a user of the service waits for Kafka, the worker's batching, the per-partition Kafka
transactions and a ``read_committed`` consumer as well. So every figure here is taken from
outside the worker: requests are published to ``user-migration-requested`` like any upstream
service would, and outcomes are counted and timed by our own ``read_committed`` consumer of the
three outcome topics, never from the service's own counters (which are measured separately,
against the topics, as "counter lag").

One run, on a fresh stack under ``.stack/bench`` that it starts and stops:

- flood: N requests published at once; users/s from the first publish to the N-th outcome
  read back; worker peak RSS; CPU seconds per 1,000 users of the worker, Kafka, PostgreSQL
  and Redis; how far ``stats.requested`` strays from the outcome topics meanwhile; where
  PostgreSQL's time went (``pg_stat_statements``, reset before the flood: the top statements by
  total execution time, with calls and share); what PostgreSQL wrote (WAL, full-page images,
  pages written out, by whom) and its CPU by kind of process and by fifth of the flood
  (``bench_pgcpu``); which resource it exhausted: the machine's busy,
  idle and stolen cores (``/proc/stat``), how much of the busy time the measured processes
  account for, and the worker's event-loop thread's share of a core (its lanes all run there).
  ``--users 10000,100000`` floods each size with freshly seeded users and a fresh worker
  process (same app id), so that peak RSS is per size.
  Before the first one, a throwaway flood of half its size (at most 10,000 users; none in
  ``--quick``) warms the servers: a fresh Kafka broker compiles its hot paths in its first
  seconds of load, and every later phase (the hand-written pipeline too) finds it warm.
- idle: single requests on an idle worker, publish → outcome visible, p50, p90 and max.
- half load: requests paced at half the flood rate, per-request latency p50 / p99 / max.
  Before it, a throwaway half load of the same rate and length (none in ``--quick``), reported
  apart: the flood warmed the broker's paths for large transactions, not those for small ones,
  and a broker that has not run them yet spends a third of a core compiling them (its C2
  compiler threads, measured per thread in /proc: 0.35 cores in the first 20 s of half load,
  0.07 by the fourth), which doubled the half load's p50.
- rounds (``--rounds``, 3; one in ``--quick``): the service's flood again (exactly-once, a
  fresh worker), at-least-once and two workers (below) and the hand-written pipeline, one
  after the other on the same number of freshly seeded users (the last flood's, at most
  100,000), the order rotated by one each round. Every comparison is taken within a round,
  minutes apart at most, and the median round reported with each round's figure: two floods of
  the same code ten minutes apart differed by up to 40 % on this shared machine, more than any
  effect measured.
- hand-written pipeline (a reference line, not the service): ``scripts/bench_reference.py``
  makes the service's writes of a migrate with aiokafka, asyncpg and redis-py directly,
  at-least-once, in a process of its own, on topics of its own (``bench-reference.`` and the
  service's names) so that it can run between the service's floods. ``service /
  hand-written`` is the service's users/s over its users/s, within each round.
- idle cost: right after the (last) flood has drained, a quiet window with nothing published:
  the worker's CPU ms/s and the PostgreSQL transactions and statements, Redis commands and Kafka
  requests per second it causes (scripts/bench_idle.py says how each is counted).
- exactly-once vs at-least-once: in each round, one fresh worker with
  ``MIGRATOR_PROCESSING_GUARANTEE=exactly_once`` and one with ``at_least_once``: what
  exactly-once costs in throughput and CPU. Then the two side by side (``paired_flood``, as for
  tracing below), as many rounds: two fresh workers in one group, one per guarantee, answering
  one flood, each its own partitions; the exactly-once worker's rate against the at-least-once
  one's. They share the broker, so this is the worker's own cost of exactly-once with the
  machine's drift taken out; the rounds before carry the broker's too. Off in ``--quick``
  (``--guarantees`` turns it on): more worker starts would lengthen CI's smoke run, and
  2,000-user floods are too short to tell the guarantees apart.
- two workers: in each round with the guarantees, the flood by two fresh exactly-once workers
  in one group (``paired_flood``): its users/s against one worker's and the hand-written
  pipeline's in that round. A worker runs its lanes on one thread; a second worker is how the
  service uses a second core.
- tracing off and on side by side (``--tracing-pairs``, 5 rounds; one in ``--quick``): two
  fresh workers in the service's group at once, one with tracing off (no ``OTEL_*`` variables)
  and one with it on, answering one flood, each the partitions it was assigned; which starts
  first alternates by round. Tracing's cost is the traced worker's CPU per user of its share
  over the untraced one's, within each round (their rates are shown too), the median round
  reported: two workers sharing one flood share the machine's state, where two floods minutes
  apart do not. The traced worker exports every span over OTLP/HTTP to a minimal receiver in
  a process of its own, as a collector is (``scripts/otlp_receiver.py``, which counts them).
  Off in ``--quick`` (``--tracing`` turns it on).
- baseline (a reference line, not the service): the batch applier applying one user per
  PostgreSQL transaction, no Kafka, on a tenth of the users (at most 5,000).

``--flood-only`` runs the floods alone (``scripts/bench --compare`` needs nothing else);
``--stack-dir`` puts the stack elsewhere than ``.stack/bench``.

Everything runs on this machine (servers, worker and this client share its CPUs), so the
figures compare runs on the same machine; nothing is asserted. Any failure is one line on
stderr and a non-zero exit; the worker's and servers' logs stay in the stack directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import bench_idle
import bench_memory
import bench_pgcpu
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from otlp_receiver import ReceiverError, ReceiverProcess

from streams.stack.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
STACK_DIR = ROOT / ".stack" / "bench"
MIGRATOR = [sys.executable, "-m", "streams.cli"]
API = "/api/v1/onboarding/migration"
APP_ID = "bench-migrator"
BASELINE_APP_ID = "bench-baseline"
DEFAULT_USERS = 100_000
QUICK_USERS = 2_000
# The reference line is a per-user rate (one transaction each): a tenth of the flood, at most
# this many, says it as well as more would (100,000 of them would take 7 minutes).
BASELINE_MOST = 5_000
SERVERS = ("kafka", "postgres", "redis")
REQUESTED_TOPIC = "user-migration-requested"
OUTCOME_TOPICS = ("user-migration-migrated", "user-migration-failed", "user-migration-rolled-back")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A flood that produces no outcome for this long has stalled (the worker died or is stuck).
STALL_S = 90.0
# The exactly-once vs at-least-once floods take the last flood's size, at most this many.
GUARANTEE_MOST = DEFAULT_USERS
GUARANTEES = ("exactly_once", "at_least_once")
# The hand-written pipeline's own topics (the service's names behind this prefix): with topics of
# its own it can run between the service's floods, whose workers would otherwise find its
# requests waiting in the service's request topic.
REFERENCE_TOPICS = "bench-reference."
# Rounds of the comparisons: the service (exactly-once), at-least-once and the hand-written
# pipeline flooded one after the other, the order rotated each round; every comparison is taken
# within a round and its median reported. One flood each, minutes apart, differed by up to 40 %
# on this shared machine (the same code: 1,799 and 3,161 users/s in one run).
ROUNDS = 3
# Single requests on the idle worker: 40 give a p90 (10 did not: one slow request in ten moved
# the p50 and made the max, and a 100 ms retry hit about one in six of them, 2026-12-04).
IDLE_REQUESTS = 40
# The idle window: 30 s covers three rounds of the answer audit (every 10 s); --quick: a glimpse.
IDLE_WINDOW = bench_idle.Window(settle_s=5.0, seconds=30.0)
QUICK_IDLE_WINDOW = bench_idle.Window(settle_s=1.0, seconds=5.0)
# The servers' warm-up: a throwaway flood of half the first size, at most this many users. A
# fresh broker spends its first seconds of load compiling (JIT): the first measured flood paid
# about 0.2 CPU s of Kafka per 1,000 users against 0.09 for the same flood a minute later, and
# the hand-written pipeline, which runs later, always found Kafka warm.
WARM_MOST = 10_000


class BenchError(Exception):
    """Why the run cannot go on, worded as the one line the operator sees."""


# --- plan --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What one run measures; ``--quick`` shrinks every part so CI can smoke-test it."""

    sizes: tuple[int, ...]
    idle_requests: int
    idle_gap_s: float
    half_load_s: float
    baseline_users: int
    json_path: Path
    quick: bool
    stack_dir: Path = STACK_DIR
    flood_only: bool = False
    guarantee_users: int | None = None  # None: no exactly-once vs at-least-once floods
    tracing_users: int | None = None  # None: no tracing on vs off floods
    tracing_pairs: int = 1  # pairs of tracing off/on floods, alternating their order
    rounds: int = 1  # rounds of the service, at-least-once and hand-written floods
    idle_window: bench_idle.Window | None = None  # None: no idle-cost window
    warm_users: int = 0  # a throwaway flood before the first measured one (0: none)
    half_load_warm: bool = False  # a throwaway half load before the measured one
    memory_price: bool = False  # measure what fresh memory costs here (bench_memory.price)


def positive(text: str) -> int:
    """A whole number of at least 1, or a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not sizes or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be positive integers: {text!r}")
    return sizes


def warm_users(quick: bool, first_size: int) -> int:
    """The warm-up flood's size: half the first flood, at most ``WARM_MOST``, none in
    ``--quick``; ``BENCH_WARM_USERS`` overrides it (0: none; ``--compare`` sets it)."""
    given = os.environ.get("BENCH_WARM_USERS")
    if given is not None:
        try:
            return max(0, int(given))
        except ValueError:
            raise BenchError(f"BENCH_WARM_USERS must be a whole number, not {given!r}") from None
    return 0 if quick else min(WARM_MOST, max(first_size // 2, 1))


def memory_price(quick: bool) -> bool:
    """Whether to measure fresh memory's price (2 GiB written, a few seconds): not in
    ``--quick``, nor where ``BENCH_MEMORY_PRICE=0`` (``--compare`` sets it: its runs compare
    sides, not machines)."""
    return not quick and os.environ.get("BENCH_MEMORY_PRICE", "1") != "0"


def build_plan(args: argparse.Namespace) -> Plan:
    sizes: tuple[int, ...] = args.users or ((QUICK_USERS,) if args.quick else (DEFAULT_USERS,))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    stack_dir = Path(args.stack_dir).resolve() if args.stack_dir else STACK_DIR
    with_guarantees = (not args.quick) if args.guarantees is None else args.guarantees
    with_tracing = (not args.quick) if args.tracing is None else args.tracing
    return Plan(
        sizes=sizes,
        idle_requests=5 if args.quick else IDLE_REQUESTS,
        idle_gap_s=0.5,
        half_load_s=5.0 if args.quick else 20.0,
        baseline_users=max(1, min(max(sizes) // 10, BASELINE_MOST)),
        json_path=Path(args.json) if args.json else stack_dir / f"bench-{stamp}.json",
        quick=args.quick,
        stack_dir=stack_dir,
        flood_only=args.flood_only,
        guarantee_users=(
            min(sizes[-1], GUARANTEE_MOST) if with_guarantees and not args.flood_only else None
        ),
        tracing_users=(
            min(sizes[-1], GUARANTEE_MOST) if with_tracing and not args.flood_only else None
        ),
        tracing_pairs=args.tracing_pairs or (1 if args.quick else TRACING_PAIRS),
        rounds=args.rounds or (1 if args.quick else ROUNDS),
        idle_window=(None if args.flood_only else QUICK_IDLE_WINDOW if args.quick else IDLE_WINDOW),
        warm_users=warm_users(args.quick, sizes[0]),
        half_load_warm=not args.quick,
        memory_price=memory_price(args.quick),
    )


# --- small helpers -----------------------------------------------------------------------------


def one_line(text: object, limit: int = 300) -> str:
    """Any message squeezed into one line: the failure contract of this script."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (no interpolation: the value some request really had)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def request_value(user_id: str) -> bytes:
    """A migrate request as an upstream producer would write it (contract §2), not via our code."""
    return json.dumps(
        {
            "schema_version": 1,
            "request_id": str(uuid.uuid4()),
            "user_id": user_id,
            "action": "migrate",
            "requested_by": "bench",
            "requested_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
    ).encode()


# --- processes: CPU and memory from /proc ------------------------------------------------------


def _stat_fields(pid: int, tid: int | None = None) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (of one thread: ``tid``)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path) as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants: PostgreSQL serves every connection in a child process."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def process_title(pid: int) -> str | None:
    """A process's title, as PostgreSQL sets it for each of its processes; None once gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def postgres_reading(root: int) -> tuple[bench_pgcpu.Reading, float]:
    """Each live PostgreSQL process's kind and own CPU, and the tree's total (``cpu_seconds``)."""
    reading: bench_pgcpu.Reading = {}
    ticks = 0
    for pid in process_tree(root):
        fields, title = _stat_fields(pid), process_title(pid)
        if fields is None or title is None:
            continue
        own = int(fields[11]) + int(fields[12])
        ticks += own + int(fields[13]) + int(fields[14])
        reading[pid] = (bench_pgcpu.kind_of(title, root=pid == root), own / CLOCK_TICKS)
    return reading, ticks / CLOCK_TICKS


async def poll_postgres(
    root: int,
    watcher: OutcomeWatcher,
    split: bench_pgcpu.Split,
    along: list[tuple[int, float]],
    free_kib: list[int],
    stop: asyncio.Event,
) -> None:
    """PostgreSQL's processes every half second, for its CPU by kind and by fifth of the flood,
    and the machine's free memory (``bench_memory``)."""
    while not stop.is_set():
        reading, total = postgres_reading(root)
        split.see(reading)
        along.append((watcher.count, total))
        free_kib.append(bench_memory.reading()["free_kib"])
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass


def cpu_seconds(root: int) -> float:
    """CPU time of a process tree, including children it has already reaped (cutime, cstime).

    Summing utime+stime+cutime+cstime over the live tree counts a backend that exited between
    two samples once: its time moved into its parent's cutime/cstime when it was reaped.
    """
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLOCK_TICKS


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """CPU time of one thread of ``pid`` (the worker's event loop is the thread ``pid`` itself)."""
    fields = _stat_fields(pid, tid)
    if fields is None:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


_MACHINE_TICKS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine_ticks() -> dict[str, int]:
    """The machine's CPU time by kind, all CPUs, in ticks (``/proc/stat``'s first line)."""
    with open("/proc/stat") as handle:
        fields = handle.readline().split()[1:]
    return dict(zip(_MACHINE_TICKS, map(int, fields), strict=False))


def machine_use(
    before: dict[str, int], after: dict[str, int], seconds: float, processes_cpu_s: float
) -> dict[str, Any]:
    """Which resource a flood exhausted, in cores: the machine's busy time (user, system and
    interrupts; a guest's time is in user), its time taken by the hypervisor (steal), its idle
    time, and how much of the busy time the measured processes account for (the rest: the
    kernel's work for them, loopback networking, and anything else running)."""
    spent = {kind: (after[kind] - before[kind]) / CLOCK_TICKS / seconds for kind in before}
    busy = sum(spent[kind] for kind in ("user", "nice", "system", "irq", "softirq"))
    return {
        "cores": os.cpu_count(),
        "busy_cores": round(busy, 2),
        "steal_cores": round(spent["steal"], 2),
        "idle_cores": round(spent["idle"] + spent["iowait"], 2),
        "processes_cores": round(processes_cpu_s / seconds, 2),
    }


def peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the stack ---------------------------------------------------------------------------------


def _migrator(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run a ``migrator`` sub-command; a failure becomes its first stderr line."""
    try:
        done = subprocess.run(
            [*MIGRATOR, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"`migrator {' '.join(args)}` did not finish in {timeout:.0f}s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["(no output)"]
        first = next((line for line in lines if line.startswith("migrator:")), lines[-1])
        raise BenchError(f"`migrator {' '.join(args)}` failed: {one_line(first)}")
    return done.stdout


def stack_down(directory: Path) -> None:
    subprocess.run(
        [*MIGRATOR, "stack", "down", "--dir", str(directory)],
        cwd=ROOT,
        capture_output=True,
        timeout=180,
        check=False,
    )


def drop_data(directory: Path) -> None:
    """After a run that succeeded, delete the servers' and workers' data, keeping the logs and
    reports: a million-user run leaves about 13 GB, which the disk and the next run's memory
    would otherwise carry (``bench_memory``). A failed run keeps everything to look at."""
    for entry in directory.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def fresh_stack(directory: Path) -> dict[str, str]:
    """Stop whatever an earlier run left there, wipe its data (keep reports), start anew."""
    stack_down(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # PostgreSQL runs as ``nobody`` under root and must reach its data
    for entry in directory.iterdir():
        if entry.name.startswith("bench-") and entry.suffix == ".json":
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    try:
        exports = _migrator("stack", "up", "--dir", str(directory))
    except BenchError as exc:
        raise BenchError(f"the stack did not start: {exc}") from None
    env = dict(os.environ)
    for line in exports.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    _migrator("db", "init", env=env)
    return env


def server_pids(directory: Path) -> dict[str, int]:
    """The stack's server pids, from its pid files, checked to be really that stack's."""
    from streams.stack.process import ServerProcess

    pids = {}
    for name in SERVERS:
        pid = ServerProcess(name, directory / name).pid()
        if pid is None:
            raise BenchError(f"{name} of the stack in {directory} is not running")
        pids[name] = pid
    return pids


# --- the worker --------------------------------------------------------------------------------


@dataclass
class Worker:
    """One ``migrator worker`` process, started like the e2e harness does."""

    env: dict[str, str]
    directory: Path
    index: int
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API}"

    @property
    def log_path(self) -> Path:
        return self.directory / f"worker-{self.index}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        env = {
            **self.env,
            "MIGRATOR_APP_ID": APP_ID,
            "MIGRATOR_WEB_PORT": str(self.port),
            "MIGRATOR_WEB_HOST": "127.0.0.1",
            "MIGRATOR_DATA_DIR": str(self.directory / f"worker-data-{self.index}"),
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*MIGRATOR, "worker", "-l", "info"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, lines: int = 40) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()][-lines:]

    def check(self, doing: str) -> None:
        """Raise if the worker process has exited: every wait calls this, so none hangs."""
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_tail(1)
            raise BenchError(
                f"the worker exited (code {self.process.returncode}) {doing}; last log line: "
                f"{one_line(tail[-1] if tail else '(empty log)', 200)}; log: {self.log_path}"
            )

    async def wait_ready(self, http: aiohttp.ClientSession, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check("during start-up")
            try:
                async with http.get(f"{self.url}/health") as response:
                    if response.status == 200 and any(
                        "Worker ready" in line for line in self.log_tail(400)
                    ):
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.3)
        raise BenchError(f"the worker was not ready within {timeout_s:.0f}s; log: {self.log_path}")

    async def requested(self, http: aiohttp.ClientSession) -> int:
        async with http.get(f"{self.url}/stats") as response:
            body = await response.json(content_type=None)
            if response.status != 200 or "requested" not in body:
                raise BenchError(f"GET stats answered {response.status}: {one_line(body, 200)}")
            return int(body["requested"])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


# --- Kafka: publishing requests and watching outcomes --------------------------------------------


class Answering(Protocol):
    """What a wait for outcomes needs of the process answering (the worker or the hand-written
    pipeline): to fail at once if it has exited, and where its log is."""

    @property
    def log_path(self) -> Path: ...

    def check(self, doing: str) -> None: ...


async def start_producer(bootstrap: list[str], *, linger_ms: int) -> AIOKafkaProducer:
    """An ordinary upstream producer (acks=all, idempotent); batching only for the flood."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=1024 * 1024,
    )
    await producer.start()
    return producer


def request_records(ids: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """A request record (key, value) for each of ``ids``: made before a flood's clock starts."""
    return [(user_id.encode(), request_value(user_id)) for user_id in ids]


async def publish_all(producer: AIOKafkaProducer, records: Sequence[tuple[bytes, bytes]]) -> None:
    """``records`` sent at once (a flood), every send awaited."""
    futures = [await producer.send(REQUESTED_TOPIC, value, key=key) for key, value in records]
    await asyncio.gather(*futures)


class OutcomeWatcher:
    """A ``read_committed`` consumer of the three outcome topics, positioned at their end.

    It sees only outcomes committed after ``open()``, so each phase opens its own and counts
    exactly its own outcomes. Each batch of records is stamped with the monotonic time it
    arrived; that is the moment an outcome consumer could have acted on it.
    """

    def __init__(self, bootstrap: list[str], *, keyed: bool, topic_prefix: str = "") -> None:
        self._topics = tuple(topic_prefix + topic for topic in OUTCOME_TOPICS)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=100,
        )
        self._keyed = keyed
        self._task: asyncio.Task[None] | None = None
        self.count = 0
        self.by_topic = dict.fromkeys(self._topics, 0)
        self.times: list[float] = []  # arrival time of each batch …
        self.totals: list[int] = []  # … and the count once it was in
        self.arrivals: dict[bytes, float] = {}  # record key → first arrival (keyed watchers)
        # Per partition (an outcome is published to its request's partition number): how many
        # outcomes, and when the last came; two workers sharing a flood each answer their own.
        self.by_partition: dict[int, int] = {}
        self.last_at: dict[int, float] = {}

    async def open(self) -> OutcomeWatcher:
        await self._consumer.start()
        try:
            await self._position()
        except BaseException:
            await self._consumer.stop()
            raise
        self._task = asyncio.create_task(self._run())
        return self

    async def _position(self) -> None:
        # ``topics()`` does not refresh the consumer's own metadata; this does (a private call:
        # streams.faust_internals, register 8).
        from streams.faust_internals import refresh_metadata

        await refresh_metadata(self._consumer)
        assigned = [
            TopicPartition(topic, partition)
            for topic in self._topics
            for partition in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        if len({tp.topic for tp in assigned}) != len(self._topics):
            raise BenchError("the outcome topics do not exist (the worker creates them)")
        self._consumer.assign(assigned)
        # read_committed end offsets are the last stable offsets: nothing before them is ours.
        ends = await self._consumer.end_offsets(assigned)
        for tp in assigned:
            self._consumer.seek(tp, ends[tp])

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            got = 0
            for tp, records in batch.items():
                self.by_topic[tp.topic] += len(records)
                self.by_partition[tp.partition] = self.by_partition.get(tp.partition, 0) + len(
                    records
                )
                self.last_at[tp.partition] = now
                got += len(records)
                if self._keyed:
                    for record in records:
                        if record.key is not None:
                            self.arrivals.setdefault(record.key, now)
            if got:
                self.count += got
                self.times.append(now)
                self.totals.append(self.count)

    def _raise_if_dead(self) -> None:
        if self._task is not None and self._task.done() and self._task.exception() is not None:
            raise BenchError(f"the outcome consumer failed: {one_line(self._task.exception())}")

    def time_of(self, count: int) -> float:
        """When the topics first held ``count`` of this watcher's outcomes."""
        return self.times[bisect_left(self.totals, count)]

    def count_at(self, moment: float) -> int:
        index = bisect_right(self.times, moment)
        return self.totals[index - 1] if index else 0

    async def wait_count(self, wanted: int, worker: Answering, what: str) -> float:
        """Wait for ``wanted`` outcomes; fail when none came for ``STALL_S``."""
        last_count, last_change = -1, time.monotonic()
        while self.count < wanted:
            self._raise_if_dead()
            worker.check(f"during the {what}")
            if self.count != last_count:
                last_count, last_change = self.count, time.monotonic()
            elif time.monotonic() - last_change > STALL_S:
                raise BenchError(
                    f"{what} stalled: {self.count}/{wanted} outcomes, none for {STALL_S:.0f}s; "
                    f"worker log: {worker.log_path}"
                )
            await asyncio.sleep(0.01)
        return self.time_of(wanted)

    async def wait_keys(self, keys: Sequence[bytes], worker: Answering, what: str) -> None:
        await self.wait_count(len(keys), worker, what)
        deadline = time.monotonic() + 30
        while any(key not in self.arrivals for key in keys):
            if time.monotonic() > deadline:
                missing = sum(key not in self.arrivals for key in keys)
                raise BenchError(f"{what}: {missing} request(s) had no outcome of their own")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping anyway
                pass
        await self._consumer.stop()


# --- seeding -----------------------------------------------------------------------------------


async def seed(env: dict[str, str], users: int, prefix: str) -> list[str]:
    """Seed legacy users (the e2e harness's generator) and return their ids."""
    from agents.jobs.seed import SeedOptions, generate, write_rows
    from streams.connections import opened
    from streams.settings import Settings

    ids: list[str] = []

    def rows() -> Iterator[tuple[Any, ...]]:
        for row in generate(SeedOptions(users=users, prefix=prefix, seed=11)):
            ids.append(row[0])
            yield row

    async with opened(Settings.from_env(env)) as (pool, _):
        inserted = await write_rows(pool, rows())
    if inserted != users:
        raise BenchError(f"seeding {prefix}*: {inserted} of {users} legacy rows were new")
    return ids


# --- the phases --------------------------------------------------------------------------------


@dataclass
class Context:
    env: dict[str, str]
    bootstrap: list[str]
    directory: Path
    servers: dict[str, int]
    http: aiohttp.ClientSession


async def warm_up(ctx: Context, worker: Answering, prefix: str, topic_prefix: str = "") -> float:
    """A few requests before any measurement: partitions assigned, transactional producers up.

    Returns the seconds from publish to the last of their outcomes (the worker's first batch).
    """
    ids = await seed(ctx.env, 8, prefix)
    watcher = await OutcomeWatcher(ctx.bootstrap, keyed=True, topic_prefix=topic_prefix).open()
    producer = await start_producer(ctx.bootstrap, linger_ms=0)
    try:
        started = time.monotonic()
        for user_id in ids:
            value = request_value(user_id)
            await producer.send(topic_prefix + REQUESTED_TOPIC, value, key=user_id.encode())
        await producer.flush()
        await watcher.wait_keys([user_id.encode() for user_id in ids], worker, "warm-up")
        return max(watcher.arrivals.values()) - started
    finally:
        await producer.stop()
        await watcher.close()


async def poll_counter(
    ctx: Context, worker: Worker, base: int, stop: asyncio.Event, samples: list[tuple[float, int]]
) -> None:
    """``stats.requested`` (minus ``base``) every 0.2 s, stamped mid-way through the request."""
    while not stop.is_set():
        sent = time.monotonic()
        try:
            value = await worker.requested(ctx.http) - base
            samples.append(((sent + time.monotonic()) / 2, value))
        except (aiohttp.ClientError, TimeoutError, BenchError):
            pass  # a busy worker may miss a poll; the gap analysis uses what it got
        await asyncio.sleep(max(0.0, 0.2 - (time.monotonic() - sent)))


def counter_lag(samples: list[tuple[float, int]], watcher: OutcomeWatcher) -> dict[str, Any]:
    """How far ``stats.requested`` was from the outcome topics while the flood ran.

    At each poll, with the counter at ``c`` and the topics at ``m``: ``behind_records`` is the
    largest ``m - c``; ``behind_s`` the longest the topics had held level ``c + 1`` while the
    counter still said ``c`` (observed at polls, so a lower bound, to within the 0.2 s poll).
    ``ahead_records``: the counter also leads, since it commits in PostgreSQL before the batch's
    Kafka transaction commits.
    """
    behind = ahead = 0
    behind_s = 0.0
    for moment, value in samples:
        topics = watcher.count_at(moment)
        behind = max(behind, topics - value)
        ahead = max(ahead, value - topics)
        if topics > value >= 0:
            behind_s = max(behind_s, moment - watcher.time_of(value + 1))
    return {
        "behind_records": behind,
        "behind_s": round(behind_s, 3),
        "ahead_records": ahead,
        "polls": len(samples),
        "final_counter": samples[-1][1] if samples else None,
    }


# How many of PostgreSQL's statements the flood's profile keeps (JSON) and prints, by time.
TOP_STATEMENTS = 25
PRINTED_STATEMENTS = 8


async def statement_profile(env: dict[str, str], *, reset: bool) -> list[dict[str, Any]]:
    """PostgreSQL's side of a flood's profile: ``pg_stat_statements`` (preloaded by the stack),
    reset before the flood and read after it. Statements of the whole server, so the bench's own
    seeding is left out by resetting after it."""
    import asyncpg

    conn = await asyncpg.connect(env["DATABASE_URL"], timeout=10)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        if reset:
            await conn.execute("SELECT pg_stat_statements_reset()")
            return []
        rows = await conn.fetch(
            """
            SELECT query, calls, total_exec_time, rows,
                   total_exec_time / nullif(sum(total_exec_time) OVER (), 0) AS share
            FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            ORDER BY total_exec_time DESC
            LIMIT $1
            """,
            TOP_STATEMENTS,
        )
    finally:
        await conn.close()
    return [
        {
            "statement": " ".join(row["query"].split())[:160],
            "calls": row["calls"],
            "total_ms": round(row["total_exec_time"], 1),
            "rows": row["rows"],
            "share": round(float(row["share"] or 0.0), 3),
        }
        for row in rows
    ]


_WRITES_SQL = """
SELECT (SELECT wal_bytes::bigint FROM pg_stat_wal) AS wal_bytes,
       (SELECT wal_fpi FROM pg_stat_wal) AS full_page_images,
       (SELECT num_done FROM pg_stat_checkpointer) AS checkpoints,
       (SELECT buffers_written FROM pg_stat_checkpointer) AS pages_by_checkpointer,
       (SELECT buffers_clean FROM pg_stat_bgwriter) AS pages_by_bgwriter,
       (SELECT coalesce(sum(write_bytes), 0)::bigint / 8192 FROM pg_stat_io
        WHERE backend_type = 'client backend' AND object = 'relation') AS pages_by_backends,
       (SELECT coalesce(sum(read_bytes), 0)::bigint / 8192 FROM pg_stat_io
        WHERE backend_type = 'client backend' AND object = 'relation') AS pages_read_by_backends,
       (SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)::bigint
        FROM pg_stat_user_tables) AS autovacuum_runs
"""


async def postgres_writes(env: dict[str, str]) -> dict[str, int]:
    """PostgreSQL's cumulative write counters: read before and after a flood, they say why its
    CPU per user grows with its tables (WAL volume, full-page images after each checkpoint,
    dirty pages written out by whom, pages read back, autovacuum and autoanalyze runs).
    PostgreSQL 18's views: ``num_done`` counts the checkpoints performed, and ``pg_stat_io``
    counts read and write operations (one may cover several pages), so pages are its bytes."""
    import asyncpg

    conn = await asyncpg.connect(env["DATABASE_URL"], timeout=10)
    try:
        row = await conn.fetchrow(_WRITES_SQL)
    finally:
        await conn.close()
    assert row is not None
    return {name: int(value) for name, value in row.items()}


def writes_summary(before: dict[str, int], after: dict[str, int], users: int) -> dict[str, Any]:
    spent = {name: after[name] - before[name] for name in after}
    return {
        "wal_bytes_per_user": round(spent["wal_bytes"] / users),
        "full_page_images_per_user": round(spent["full_page_images"] / users, 3),
        "checkpoints": spent["checkpoints"],
        "autovacuum_runs": spent["autovacuum_runs"],
        **{
            f"{name}_per_1000_users": round(spent[name] * 1000 / users, 1)
            for name in (
                "pages_by_checkpointer",
                "pages_by_bgwriter",
                "pages_by_backends",
                "pages_read_by_backends",
            )
        },
    }


async def flood(ctx: Context, worker: Worker, ids: list[str]) -> dict[str, Any]:
    """All requests at once; users/s from the first publish to the last outcome read back."""
    users = len(ids)
    await statement_profile(ctx.env, reset=True)
    writes_before = await postgres_writes(ctx.env)
    records = request_records(ids)
    watcher = await OutcomeWatcher(ctx.bootstrap, keyed=False).open()
    producer = await start_producer(ctx.bootstrap, linger_ms=20)
    base = await worker.requested(ctx.http)
    stop, pg_stop = asyncio.Event(), asyncio.Event()
    samples: list[tuple[float, int]] = []
    try:
        processes = {"worker": worker.pid, **ctx.servers}
        cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
        client_before = self_cpu_seconds()
        loop_before = thread_cpu_seconds(worker.pid, worker.pid)
        machine_before, sampled_before = machine_ticks(), time.monotonic()
        poller = asyncio.create_task(poll_counter(ctx, worker, base, stop, samples))
        postgres = ctx.servers["postgres"]
        first, _ = postgres_reading(postgres)
        split = bench_pgcpu.Split(first)
        along: list[tuple[int, float]] = [(0, cpu_before["postgres"])]
        memory_before = bench_memory.reading()
        free_kib: list[int] = []
        pg_poller = asyncio.create_task(
            poll_postgres(postgres, watcher, split, along, free_kib, pg_stop)
        )
        started = time.monotonic()
        await publish_all(producer, records)
        published = time.monotonic()
        finished = await watcher.wait_count(users, worker, "flood")
        machine_after, sampled_after = machine_ticks(), time.monotonic()
        cpu_after = {name: cpu_seconds(pid) for name, pid in processes.items()}
        memory_after = bench_memory.reading()
        last, total = postgres_reading(postgres)
        split.see(last)
        along.append((watcher.count, total))
        pg_stop.set()
        await pg_poller
        client_cpu = self_cpu_seconds() - client_before
        loop_cpu = thread_cpu_seconds(worker.pid, worker.pid) - loop_before
        # Let the counter catch up, so the lag of the last levels is measured too.
        deadline = time.monotonic() + 30
        while (not samples or samples[-1][1] < users) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # anything beyond N would be a duplicate outcome
        stop.set()
        await poller
        statements = await statement_profile(ctx.env, reset=False)
        writes = writes_summary(writes_before, await postgres_writes(ctx.env), users)
    finally:
        stop.set()
        pg_stop.set()
        await producer.stop()
        await watcher.close()
    elapsed = finished - started
    spent = {name: cpu_after[name] - cpu_before[name] for name in processes}
    spent["bench client"] = client_cpu
    per_1k = {name: round(seconds * 1000 / users, 3) for name, seconds in spent.items()}
    window = sampled_after - sampled_before
    machine = machine_use(machine_before, machine_after, window, sum(spent.values()))
    machine["worker_loop_thread_cores"] = round(loop_cpu / window, 2)
    return {
        "users": users,
        "seconds": round(elapsed, 3),
        "users_per_s": round(users / elapsed, 1),
        "publish_s": round(published - started, 3),
        "first_outcome_s": round(watcher.times[0] - started, 3),
        "outcomes": {
            topic.removeprefix("user-migration-"): n for topic, n in watcher.by_topic.items()
        },
        "outcomes_total": watcher.count,
        "worker_peak_rss_mib": round(peak_rss_mib(worker.pid), 1),
        "cpu_s_per_1000_users": per_1k,
        "machine": machine,
        "counter_lag": counter_lag(samples, watcher),
        "postgres_top_statements": statements,
        "postgres_writes": writes,
        "postgres_cpu": {
            "by_kind_per_1000_users": {
                kind: round(seconds * 1000 / users, 3)
                for kind, seconds in split.seconds(spent["postgres"]).items()
            },
            "by_fifth_per_1000_users": bench_pgcpu.by_fifths(along, users),
        },
        "memory": bench_memory.flood_memory(memory_before, memory_after, free_kib, users),
    }


async def idle(ctx: Context, worker: Worker, count: int, gap_s: float) -> dict[str, Any]:
    """Single requests on an idle worker: what one user waits, batching window included."""
    ids = await seed(ctx.env, count, "idle-")
    watcher = await OutcomeWatcher(ctx.bootstrap, keyed=True).open()
    producer = await start_producer(ctx.bootstrap, linger_ms=0)
    latencies = []
    try:
        for user_id in ids:
            key = user_id.encode()
            sent = time.monotonic()
            await producer.send(REQUESTED_TOPIC, request_value(user_id), key=key)
            await watcher.wait_keys([key], worker, "idle test")
            latencies.append((watcher.arrivals[key] - sent) * 1000)
            await asyncio.sleep(gap_s)
    finally:
        await producer.stop()
        await watcher.close()
    return {
        "requests": count,
        "gap_s": gap_s,
        "p50_ms": round(percentile(latencies, 50), 1),
        "p90_ms": round(percentile(latencies, 90), 1),
        "max_ms": round(max(latencies), 1),
        "latencies_ms": [round(value, 1) for value in latencies],
    }


# The half load's publisher batches as an upstream service's producer does by default since
# Kafka 4.0 (KIP-1030: linger.ms 5). With 0, this client sent a produce request per record or
# two: about 400 a second at 900 records a second, which cost the co-located broker 0.17-0.30
# of a core and this client 0.25 (0.07-0.09 and 0.15 with 5 ms, measured alone), on a machine
# whose two cores the worker, PostgreSQL and Redis share. Each latency counts the wait.
HALF_LOAD_LINGER_MS = 5


async def half_load(
    ctx: Context, worker: Worker, flood_rate: float, duration_s: float, prefix: str = "half-"
) -> dict[str, Any]:
    """Requests paced at half the flood rate: latency under a load the worker can sustain."""
    rate = max(1.0, flood_rate / 2)
    ids = await seed(ctx.env, max(1, round(rate * duration_s)), prefix)
    records = request_records(ids)
    watcher = await OutcomeWatcher(ctx.bootstrap, keyed=True).open()
    producer = await start_producer(ctx.bootstrap, linger_ms=HALF_LOAD_LINGER_MS)
    sent_at: dict[bytes, float] = {}
    processes = {"worker": worker.pid, **ctx.servers}
    cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    try:
        futures = []
        started = time.monotonic()
        for number, (key, value) in enumerate(records):
            ahead = started + number / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            sent_at[key] = time.monotonic()
            futures.append(await producer.send(REQUESTED_TOPIC, value, key=key))
        paced_s = time.monotonic() - started
        await asyncio.gather(*futures)
        await watcher.wait_keys(list(sent_at), worker, "half-load test")
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in processes.items()}
    finally:
        await producer.stop()
        await watcher.close()
    latencies = [(watcher.arrivals[key] - moment) * 1000 for key, moment in sent_at.items()]
    # Per second of pacing: a steady p50 means the worker keeps up; a rising one, a backlog.
    by_second: dict[int, list[float]] = {}
    for moment, latency in zip(sent_at.values(), latencies, strict=True):
        by_second.setdefault(int(moment - started), []).append(latency)
    return {
        "target_rate_per_s": round(rate, 1),
        "publisher_linger_ms": HALF_LOAD_LINGER_MS,
        "achieved_rate_per_s": round(len(records) / max(paced_s, 1e-9), 1),
        "seconds": round(paced_s, 2),
        "requests": len(records),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "p50_ms_per_second": [round(percentile(v, 50)) for _, v in sorted(by_second.items())],
        "cpu_s_per_1000_requests": {
            name: round(seconds * 1000 / len(records), 3) for name, seconds in cpu.items()
        },
        "worker_peak_rss_mib": round(peak_rss_mib(worker.pid), 1),
    }


async def baseline(ctx: Context, users: int) -> dict[str, Any]:
    """The reference line: the service's own core, one user per PostgreSQL transaction.

    No Kafka and no worker: it shows what batching buys, on the same servers, not what the
    service does. Its own app id keeps its answers and counters apart from the worker's.
    """
    from agents.batch_applier import BatchApplier
    from agents.core.decide import Work
    from agents.stores.postgres_batch import PostgresStore
    from agents.stores.redis_mirror import RedisMirror
    from schemas.events import MigrationRequest
    from streams.connections import opened
    from streams.settings import Settings

    ids = await seed(ctx.env, users, "base-")
    watched = {"postgres": ctx.servers["postgres"], "redis": ctx.servers["redis"]}
    async with opened(Settings.from_env(ctx.env)) as (pool, redis):
        core = BatchApplier(PostgresStore(pool), RedisMirror(redis), app_id=BASELINE_APP_ID)
        migrated = 0
        cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
        client_before = self_cpu_seconds()
        started = time.monotonic()
        for offset, user_id in enumerate(ids):
            request = MigrationRequest(request_id=uuid.uuid4(), user_id=user_id)
            applied = await core.apply([Work(request, 0, offset, None)])
            if applied is None:
                raise BenchError("baseline: the core gave no answer (PostgreSQL went away)")
            migrated += sum(outcome.outcome == "migrated" for outcome in applied.outcomes)
        elapsed = time.monotonic() - started
        per_1k = {
            name: round((cpu_seconds(pid) - cpu_before[name]) * 1000 / users, 3)
            for name, pid in watched.items()
        }
        client_cpu = self_cpu_seconds() - client_before
        per_1k["bench process (core)"] = round(client_cpu * 1000 / users, 3)
    return {
        "what": "BatchApplier.apply, 1 user per PostgreSQL transaction, sequential, no Kafka",
        "users": users,
        "migrated": migrated,
        "seconds": round(elapsed, 3),
        "users_per_s": round(users / elapsed, 1),
        "cpu_s_per_1000_users": per_1k,
    }


async def reference_topics(ctx: Context) -> None:
    """The hand-written pipeline's topics (``REFERENCE_TOPICS``), as many partitions as the
    service's; left as they are when they exist."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    from streams.settings import Settings

    partitions = Settings.from_env(ctx.env).topic_partitions
    admin = AIOKafkaAdminClient(bootstrap_servers=ctx.bootstrap)
    await admin.start()
    try:
        for name in (REQUESTED_TOPIC, *OUTCOME_TOPICS):
            try:
                await admin.create_topics([NewTopic(REFERENCE_TOPICS + name, partitions, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def hand_written(ctx: Context, users: int, prefix: str = "ref") -> dict[str, Any]:
    """The hand-written pipeline (``scripts/bench_reference.py``: the service's writes of a
    migrate with aiokafka, asyncpg and redis-py, at-least-once, no framework) flooded like the
    service: its own freshly seeded users, published at once, users/s from the first publish to
    the N-th outcome read back, CPU per 1,000 users of its process (one of its own, as the
    worker's) and of the servers. Its topics are its own (``REFERENCE_TOPICS``), so it runs
    between the service's floods; no worker runs meanwhile.
    """
    from bench_reference import ReferenceFailed, running

    await reference_topics(ctx)
    ids = await seed(ctx.env, users, f"{prefix}-")
    records = request_records(ids)
    try:
        log = ctx.directory / "reference.log"
        async with running(ctx.env, log, topic_prefix=REFERENCE_TOPICS) as reference:
            await warm_up(ctx, reference, f"{prefix}w-", REFERENCE_TOPICS)
            watcher = await OutcomeWatcher(
                ctx.bootstrap, keyed=False, topic_prefix=REFERENCE_TOPICS
            ).open()
            producer = await start_producer(ctx.bootstrap, linger_ms=20)
            processes = {"reference": reference.pid, **ctx.servers}
            try:
                cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
                client_before = self_cpu_seconds()
                started = time.monotonic()
                topic = REFERENCE_TOPICS + REQUESTED_TOPIC
                futures = [await producer.send(topic, value, key=key) for key, value in records]
                await asyncio.gather(*futures)
                published = time.monotonic()
                finished = await watcher.wait_count(users, reference, "hand-written flood")
                cpu_after = {name: cpu_seconds(pid) for name, pid in processes.items()}
                client_cpu = self_cpu_seconds() - client_before
                await asyncio.sleep(1.0)  # anything beyond N would be a duplicate outcome
            finally:
                await producer.stop()
                await watcher.close()
            done = await reference.stop()
    except ReferenceFailed as exc:
        raise BenchError(str(exc)) from None
    elapsed = finished - started
    per_1k = {
        name: round((cpu_after[name] - cpu_before[name]) * 1000 / users, 3) for name in processes
    }
    per_1k["bench client"] = round(client_cpu * 1000 / users, 3)
    return {
        "what": "scripts/bench_reference.py: the same writes, aiokafka + asyncpg + redis-py, "
        "at-least-once, no framework",
        "users": users,
        "seconds": round(elapsed, 3),
        "users_per_s": round(users / elapsed, 1),
        "publish_s": round(published - started, 3),
        "outcomes": {
            topic.removeprefix(REFERENCE_TOPICS).removeprefix("user-migration-"): n
            for topic, n in watcher.by_topic.items()
        },
        "outcomes_total": watcher.count,
        "batches_with_warm_up": done.get("batches"),
        "cpu_s_per_1000_users": per_1k,
    }


async def idle_cost(ctx: Context, worker: Worker, window: bench_idle.Window) -> dict[str, Any]:
    """What the drained worker spends per second with nothing published (scripts/bench_idle.py)."""
    try:
        return await bench_idle.measure(
            env=ctx.env,
            stack_dir=ctx.directory,
            bootstrap=ctx.bootstrap[0],
            worker_pid=worker.pid,
            servers=ctx.servers,
            cpu_seconds=cpu_seconds,
            window=window,
            worker_alive=lambda: worker.check("during the idle-cost window"),
        )
    except bench_idle.IdleCostError as exc:
        raise BenchError(f"idle cost: {exc}") from None


REFERENCE = "reference"
# The service's flood by two workers in one group (exactly-once): one worker process runs its
# lanes on one thread, so on a machine with two cores a second worker is how the service uses
# the second (run in the rounds with ``--guarantees``).
TWO_WORKERS = "two_workers"
BOTH = "both"


def round_orders(modes: Sequence[str], rounds: int) -> list[list[str]]:
    """Each round's order: ``modes`` rotated by one more each round, so that no mode always
    runs first (on the warmest or coldest machine) or right after the same other one."""
    return [[*modes[r % len(modes) :], *modes[: r % len(modes)]] for r in range(rounds)]


async def comparison_rounds(
    ctx: Context, users: int, first_index: int, rounds: int, *, guarantees: bool
) -> list[dict[str, dict[str, Any]]]:
    """``rounds`` rounds of floods on ``users`` freshly seeded users each: the service
    (exactly-once), at-least-once and two exactly-once workers in one group when
    ``guarantees``, and the hand-written pipeline, in ``round_orders``. Fresh workers per
    service flood, on the same stack; the only differences between the service's runs are
    ``MIGRATOR_PROCESSING_GUARANTEE`` and the number of workers."""
    modes = [GUARANTEES[0], *((*GUARANTEES[1:], TWO_WORKERS) if guarantees else ()), REFERENCE]
    done: list[dict[str, dict[str, Any]]] = []
    index = first_index
    for number, order in enumerate(round_orders(modes, rounds)):
        runs: dict[str, dict[str, Any]] = {}
        for mode in order:
            label = f"{mode} ({number + 1}/{rounds})"
            if mode == REFERENCE:
                progress(f"{label}: the hand-written pipeline, {users:,} users")
                runs[mode] = await hand_written(ctx, users, f"ref{number}")
                progress(f"  {runs[mode]['users_per_s']:,.0f} users/s")
                continue
            if mode == TWO_WORKERS:
                envs = {name: ctx.env for name in ("worker 1", "worker 2")}
                paired = await paired_flood(ctx, envs, index, users, f"s{index}", label)
                runs[mode] = {**paired[BOTH], "workers": [paired[name] for name in envs]}
                index += 2
                continue
            env = {**ctx.env, "MIGRATOR_PROCESSING_GUARANTEE": mode}
            runs[mode] = await fresh_flood(ctx, env, index, users, f"g{index}", label)
            runs[mode]["guarantee"] = mode
            index += 1
        done.append(runs)
    return done


def scale_out_summary(rounds: Sequence[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Two workers against one, and against the hand-written pipeline, within each round (by
    users/s); the median round by the first."""
    each = [
        {
            "users_per_s": r[TWO_WORKERS]["users_per_s"],
            "more_than_one_worker_pct": percent_more(
                r[TWO_WORKERS]["users_per_s"], r[GUARANTEES[0]]["users_per_s"]
            ),
            "ratio_to_hand_written": round(
                r[TWO_WORKERS]["users_per_s"] / r[REFERENCE]["users_per_s"], 3
            ),
        }
        for r in rounds
    ]
    middle = median_index([e["more_than_one_worker_pct"] for e in each])
    two = rounds[middle][TWO_WORKERS]
    return {
        **each[middle],
        "users": two["users"],
        "one_worker_users_per_s": rounds[middle][GUARANTEES[0]]["users_per_s"],
        "hand_written_users_per_s": rounds[middle][REFERENCE]["users_per_s"],
        "workers": two["workers"],
        "rounds": each,
    }


def scale_out_lines(summary: dict[str, Any]) -> list[str]:
    """The table's two-workers section."""
    each = ", ".join(f"{r['users_per_s']:,.0f}" for r in summary["rounds"])
    workers = "; ".join(
        f"worker on partitions {','.join(str(p) for p in w['partitions'])}: "
        f"{w['users_per_s']:,.0f} users/s, {w['worker_cpu_s_per_1000_users']:.3f} CPU s per "
        "1,000 of its users"
        for w in summary["workers"]
    )
    return [
        f"two workers (exactly-once) in one group, the flood again on {summary['users']:,} "
        f"freshly seeded users, in each round; the median round:",
        f"  {summary['users_per_s']:,.0f} users/s, {_pct(summary['more_than_one_worker_pct'])} "
        f"against one worker ({summary['one_worker_users_per_s']:,.0f}); "
        f"{summary['ratio_to_hand_written']:.2f} of the hand-written pipeline "
        f"({summary['hand_written_users_per_s']:,.0f}); each round: {each} users/s",
        f"  {workers}",
    ]


def median_index(values: Sequence[float | None]) -> int:
    """Which round's value is the median (a round without one ranks last)."""
    ranked = sorted(range(len(values)), key=lambda i: math.inf if values[i] is None else values[i])
    return ranked[(len(ranked) - 1) // 2]


def reference_summary(rounds: Sequence[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The service's flood as a share of the hand-written pipeline's, within each round; the
    median round's reference run, with its ratio and every round's."""
    ratios = [
        round(r[GUARANTEES[0]]["users_per_s"] / r[REFERENCE]["users_per_s"], 3) for r in rounds
    ]
    middle = median_index(ratios)
    service = rounds[middle][GUARANTEES[0]]
    return {
        **rounds[middle][REFERENCE],
        "ratio": ratios[middle],
        "ratios": ratios,
        "service": {
            "users_per_s": service["users_per_s"],
            "worker_cpu_s_per_1000_users": service["cpu_s_per_1000_users"]["worker"],
        },
    }


async def fresh_flood(
    ctx: Context, env: dict[str, str], index: int, users: int, prefix: str, label: str
) -> dict[str, Any]:
    """The flood on ``users`` freshly seeded users, by a fresh worker started with ``env``."""
    ids = await seed(ctx.env, users, f"{prefix}-")
    progress(f"{label}: {users:,} users seeded, worker")
    worker = Worker(env, ctx.directory, index)
    worker.start()
    try:
        await worker.wait_ready(ctx.http)
        first_batch_s = await warm_up(ctx, worker, f"{prefix}w-")
        result = await flood(ctx, worker, ids)
    finally:
        worker.stop()
    result["warm_up_s"] = round(first_batch_s, 3)
    progress(f"  {result['users_per_s']:,.0f} users/s in {result['seconds']:.1f}s")
    return result


def guarantee_summary(rounds: Sequence[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """What exactly-once costs: the share of at-least-once throughput it gives up within each
    round, and CPU; ``exactly_once`` and ``at_least_once`` are the runs of the median round."""
    costs = [
        percent_less(r["exactly_once"]["users_per_s"], r["at_least_once"]["users_per_s"])
        for r in rounds
    ]
    middle = rounds[median_index(costs)]
    eos, alo = middle["exactly_once"], middle["at_least_once"]
    worker_cpu = {
        "exactly_once": eos["cpu_s_per_1000_users"]["worker"],
        "at_least_once": alo["cpu_s_per_1000_users"]["worker"],
    }
    return {
        "users": eos["users"],
        "order": list(GUARANTEES),
        "exactly_once_cost_pct_of_throughput": percent_less(eos["users_per_s"], alo["users_per_s"]),
        "exactly_once_extra_worker_cpu_pct": percent_more(
            worker_cpu["exactly_once"], worker_cpu["at_least_once"]
        ),
        "worker_cpu_s_per_1000_users": worker_cpu,
        "rounds": [
            {
                "order": [mode for mode in r if mode in GUARANTEES],
                "users_per_s": {mode: r[mode]["users_per_s"] for mode in GUARANTEES},
                "exactly_once_cost_pct_of_throughput": cost,
            }
            for r, cost in zip(rounds, costs, strict=True)
        ],
        "exactly_once": eos,
        "at_least_once": alo,
    }


async def paired_guarantees(
    ctx: Context, users: int, first_index: int, pairs: int
) -> dict[str, Any]:
    """Exactly-once against at-least-once side by side: in each round two fresh workers in the
    service's group at once, one per guarantee, answering one flood of ``users``, each the
    partitions it was assigned; which starts first alternates by round. Both share the broker,
    whose transaction work (markers, the coordinator) slows both: this isolates the worker's
    own cost of exactly-once, the rounds of ``comparison_rounds`` carry the broker's too."""
    done = []
    for pair in range(pairs):
        order = GUARANTEES if pair % 2 == 0 else GUARANTEES[::-1]
        envs = {mode: {**ctx.env, "MIGRATOR_PROCESSING_GUARANTEE": mode} for mode in order}
        label = f"exactly-once and at-least-once side by side ({pair + 1}/{pairs})"
        done.append(await paired_flood(ctx, envs, first_index + 2 * pair, users, f"p{pair}", label))
    return paired_summary(done, GUARANTEES, by="rate")


def paired_summary(
    pairs: Sequence[dict[str, dict[str, Any]]], order: tuple[str, str], *, by: str
) -> dict[str, Any]:
    """Two workers side by side, ``order[0]`` measured against ``order[1]`` within each round:
    its rate given up (``rate_cost_pct``) and its extra CPU per user (``extra_cpu_pct``); the
    round with the median of ``by`` ("rate" or "cpu") and its two runs."""
    measured, reference = order

    def rate_cost(p: dict[str, dict[str, Any]]) -> float | None:
        return percent_less(p[measured]["users_per_s"], p[reference]["users_per_s"])

    def extra_cpu(p: dict[str, dict[str, Any]]) -> float | None:
        return percent_more(
            p[measured]["worker_cpu_s_per_1000_users"],
            p[reference]["worker_cpu_s_per_1000_users"],
        )

    each = [
        {
            "first": next(iter(p)),
            "partitions": {mode: p[mode]["partitions"] for mode in order},
            "users_per_s": {mode: p[mode]["users_per_s"] for mode in order},
            "worker_cpu_s_per_1000_users": {
                mode: p[mode]["worker_cpu_s_per_1000_users"] for mode in order
            },
            "rate_cost_pct": rate_cost(p),
            "extra_cpu_pct": extra_cpu(p),
        }
        for p in pairs
    ]
    middle = median_index([e["rate_cost_pct" if by == "rate" else "extra_cpu_pct"] for e in each])
    return {
        "users": sum(pairs[middle][mode]["users"] for mode in order),
        "order": list(order),
        "median_by": by,
        "rate_cost_pct": each[middle]["rate_cost_pct"],
        "extra_cpu_pct": each[middle]["extra_cpu_pct"],
        "pairs": each,
        **{mode: pairs[middle][mode] for mode in order},
    }


TRACING = ("off", "on")
SAMPLER_VARIABLES = ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG")
# Rounds of the traced and the untraced worker side by side. Taken one after the other, two
# floods of the same code differed by up to 40 % in users/s on this machine and by 20 % in the
# worker's CPU per user, far more than tracing costs. Two workers answering one flood at once
# share the machine's state, yet two untraced workers still read +1.5, +2.0, +1.5 and 0.0 %
# apart (2026-12-04), and the traced worker's main thread alone moved -1.6 to +10.2 µs a user
# from its neighbour's (of about 270) while its export thread cost 4-6 µs: five rounds, so that
# the median is not one disturbed round's (with three, one round of +4.5 or +5.8 % was the
# median of runs whose other rounds read +0.7 to +2.3 %).
TRACING_PAIRS = 5


async def tracings(ctx: Context, users: int, first_index: int, pairs: int) -> dict[str, Any]:
    """Tracing's cost side by side: in each round, two fresh workers in the service's group at
    once, one with tracing off (no ``OTEL_*`` variables) and one with it on, answering one flood
    of ``users``, each the partitions it was assigned; which starts first alternates by round.
    Each round compares the two workers' CPU per 1,000 users of their own share, and their
    rates. The traced worker exports its spans over OTLP/HTTP to a receiver in a process of its
    own, as a collector is (see ``otlp_receiver``): every span, unless the bench's own
    environment names a sampler (``OTEL_TRACES_SAMPLER``, ``…_ARG``: passed on)."""
    try:
        with ReceiverProcess() as receiver:
            return await _traced_pairs(ctx, users, first_index, pairs, receiver)
    except ReceiverError as exc:
        raise BenchError(str(exc)) from None


async def _traced_pairs(
    ctx: Context, users: int, first_index: int, pairs: int, receiver: ReceiverProcess
) -> dict[str, Any]:
    plain = {name: value for name, value in ctx.env.items() if not name.startswith("OTEL_")}
    sampler = {name: ctx.env[name] for name in SAMPLER_VARIABLES if name in ctx.env}
    traced = {
        **plain,
        **sampler,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "onboarding-migrator-bench",
    }
    done: list[dict[str, dict[str, Any]]] = []
    for pair in range(pairs):
        order = TRACING if pair % 2 == 0 else TRACING[::-1]
        envs = {mode: traced if mode == "on" else plain for mode in order}
        label = f"tracing off and on side by side ({pair + 1}/{pairs})"
        before = receiver.count
        runs = await paired_flood(ctx, envs, first_index + 2 * pair, users, f"t{pair}", label)
        # Every span the traced worker exported, its warm-up's too.
        runs["on"]["spans_received"] = receiver.count - before
        runs["on"]["sampler"] = sampler
        done.append(runs)
    return tracing_summary(done)


class _Both:
    """Two workers as one ``Answering``: a wait fails at once if either has exited."""

    def __init__(self, workers: Sequence[Worker]) -> None:
        self._workers = workers

    @property
    def log_path(self) -> Path:
        return self._workers[0].log_path

    def check(self, doing: str) -> None:
        for worker in self._workers:
            worker.check(doing)


async def paired_flood(
    ctx: Context,
    envs: dict[str, dict[str, str]],
    first_index: int,
    users: int,
    prefix: str,
    label: str,
) -> dict[str, dict[str, Any]]:
    """One flood on ``users`` freshly seeded users, answered by two fresh workers at once (one
    per entry of ``envs``, started in that order, each ready before the next) in the service's
    group: per worker, the partitions it was assigned, how many of the flood's users they held,
    its CPU s per 1,000 of them and its rate (its share over the time to its last outcome);
    under ``BOTH`` the flood's own rate, first publish to last outcome."""
    ids = await seed(ctx.env, users, f"{prefix}-")
    progress(f"{label}: {users:,} users seeded, two workers")
    workers = {
        mode: Worker(env, ctx.directory, first_index + number)
        for number, (mode, env) in enumerate(envs.items())
    }
    both = _Both(list(workers.values()))
    try:
        # One after the other, the first ready before the second starts: started together, the
        # one slower to start (the traced worker loads the OpenTelemetry SDK) joined the group
        # last in 9 rounds of 10 and took the same partitions each time. Staggered, the order
        # (alternated by the caller) decides which joins first, for either side in turn.
        for worker in workers.values():
            worker.start()
            await worker.wait_ready(ctx.http)
        owned = await split_assignment(ctx, workers)
        await warm_up(ctx, both, f"{prefix}w-")
        records = request_records(ids)
        watcher = await OutcomeWatcher(ctx.bootstrap, keyed=False).open()
        producer = await start_producer(ctx.bootstrap, linger_ms=20)
        try:
            cpu_before = {mode: cpu_seconds(w.pid) for mode, w in workers.items()}
            started = time.monotonic()
            await publish_all(producer, records)
            finished = await watcher.wait_count(users, both, label)
            cpu_after = {mode: cpu_seconds(w.pid) for mode, w in workers.items()}
        finally:
            await producer.stop()
            await watcher.close()
    finally:
        for worker in workers.values():
            worker.stop()
    runs: dict[str, dict[str, Any]] = {}
    for mode, partitions in owned.items():
        share = sum(watcher.by_partition.get(p, 0) for p in partitions)
        if not share:
            raise BenchError(f"{label}: the {mode} worker's partitions {partitions} held no user")
        seconds = max(watcher.last_at[p] for p in partitions if p in watcher.last_at) - started
        runs[mode] = {
            "partitions": partitions,
            "users": share,
            "seconds": round(seconds, 3),
            "users_per_s": round(share / seconds, 1),
            "worker_cpu_s_per_1000_users": round(
                (cpu_after[mode] - cpu_before[mode]) * 1000 / share, 3
            ),
        }
    runs[BOTH] = {"users": users, "users_per_s": round(users / (finished - started), 1)}
    progress(
        f"  {runs[BOTH]['users_per_s']:,.0f} users/s in all; "
        + ", ".join(
            f"{mode} {run['users_per_s']:,.0f} users/s, "
            f"{run['worker_cpu_s_per_1000_users']:.3f} CPU s per 1,000"
            for mode, run in runs.items()
            if mode != BOTH
        )
    )
    return runs


async def split_assignment(ctx: Context, workers: dict[str, Worker]) -> dict[str, list[int]]:
    """Each worker's request partitions once the group has split them between the two (each
    owns some, none owns one twice, every partition owned), from the workers' own status
    reports (``GET …/workers``, the row marked ``this``)."""
    partitions = topic_partitions(ctx)
    deadline = time.monotonic() + 120
    while True:
        owned: dict[str, list[int]] = {}
        for mode, worker in workers.items():
            worker.check("while the group split the partitions")
            async with ctx.http.get(f"{worker.url}/workers") as response:
                body = await response.json(content_type=None)
            rows = body.get("workers", []) if isinstance(body, dict) else []
            owned[mode] = sorted(p for row in rows if row.get("this") for p in row["partitions"])
        every = [p for partitions in owned.values() for p in partitions]
        if all(owned.values()) and len(every) == len(set(every)) == partitions:
            return owned
        if time.monotonic() > deadline:
            raise BenchError(f"the two workers did not split the partitions in 120 s: {owned}")
        await asyncio.sleep(0.5)


def topic_partitions(ctx: Context) -> int:
    from streams.settings import Settings

    return Settings.from_env(ctx.env).topic_partitions


def tracing_summary(pairs: Sequence[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """What tracing costs: the traced worker's extra CPU per user over the untraced one's,
    within each round, and the round with the median of it; that round's rates too."""
    return {
        **paired_summary(pairs, ("on", "off"), by="cpu"),
        "spans_received": sum(p["on"]["spans_received"] for p in pairs),
    }


def machine_line(users: int, machine: dict[str, Any]) -> str:
    """Which resource the flood exhausted: the machine's cores, or the worker's one thread."""
    return (
        f"  machine during the {users:,}-user flood: {machine['busy_cores']:.2f} of "
        f"{machine['cores']} cores busy ({machine['processes_cores']:.2f} in the processes above), "
        f"{machine['idle_cores']:.2f} unused, {machine['steal_cores']:.2f} taken by the "
        f"hypervisor; the worker's event-loop thread "
        f"{machine['worker_loop_thread_cores']:.2f} of a core"
    )


def percent_more(value: float, reference: float) -> float | None:
    """How many % ``value`` is above ``reference`` (negative: below); None without a reference."""
    if not reference or math.isnan(reference) or math.isnan(value):
        return None
    return round((value - reference) * 100 / reference, 1)


def percent_less(value: float, reference: float) -> float | None:
    """How many % ``value`` is below ``reference`` (negative: above); None without a reference."""
    more = percent_more(value, reference)
    return None if more is None else round(0.0 - more, 1)


# --- the run -----------------------------------------------------------------------------------


async def measure(plan: Plan, env: dict[str, str], directory: Path) -> dict[str, Any]:
    from streams.settings import Settings

    settings = Settings.from_env(env)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        servers = server_pids(directory)
        ctx = Context(env, settings.kafka_bootstrap_servers, directory, servers, http)
        floods: list[dict[str, Any]] = []
        worker: Worker | None = None
        fresh_memory = None
        if plan.memory_price:
            progress("what fresh memory costs on this machine (2 GiB written)")
            fresh_memory = await asyncio.to_thread(bench_memory.price, directory)
        try:
            for index, size in enumerate(plan.sizes):
                if worker is not None:
                    worker.stop()
                ids = await seed(env, size, f"f{index}-")
                progress(f"flood {index + 1}/{len(plan.sizes)}: {size:,} users seeded, worker")
                worker = Worker(env, directory, index)
                worker.start()
                await worker.wait_ready(http)
                first_batch_s = await warm_up(ctx, worker, f"w{index}-")
                if index == 0 and plan.warm_users:
                    progress(f"servers' warm-up: a throwaway flood of {plan.warm_users:,} users")
                    await flood(ctx, worker, await seed(env, plan.warm_users, "warm-"))
                progress(f"flood {index + 1}/{len(plan.sizes)}: publishing {size:,} requests")
                result = await flood(ctx, worker, ids)
                result["warm_up_s"] = round(first_batch_s, 3)
                floods.append(result)
                progress(f"  {result['users_per_s']:,.0f} users/s in {result['seconds']:.1f}s")
            assert worker is not None
            if plan.flood_only:
                return {"floods": floods, "fresh_memory": fresh_memory}
            idle_cost_result = None
            if plan.idle_window is not None:
                progress(f"idle cost: {plan.idle_window.seconds:.0f} s with nothing published")
                idle_cost_result = await idle_cost(ctx, worker, plan.idle_window)
            progress(f"idle: {plan.idle_requests} single requests")
            idle_result = await idle(ctx, worker, plan.idle_requests, plan.idle_gap_s)
            rate = floods[-1]["users_per_s"]
            half_warm_result = None
            if plan.half_load_warm:
                seconds = plan.half_load_s
                progress(f"half load's warm-up: {rate / 2:,.0f} requests/s for {seconds:.0f}s")
                half_warm_result = await half_load(ctx, worker, rate, seconds, prefix="half-warm-")
            progress(f"half load: {rate / 2:,.0f} requests/s for {plan.half_load_s:.0f}s")
            half_result = await half_load(ctx, worker, rate, plan.half_load_s)
            worker_rss = peak_rss_mib(worker.pid)
        finally:
            if worker is not None:
                worker.stop()
        with_guarantees = plan.guarantee_users is not None
        compared = plan.guarantee_users or min(plan.sizes[-1], GUARANTEE_MOST)
        rounds = await comparison_rounds(
            ctx, compared, len(plan.sizes), plan.rounds, guarantees=with_guarantees
        )
        reference = reference_summary(rounds)
        guarantee_result = None
        first = len(plan.sizes) + plan.rounds * len(GUARANTEES)
        if with_guarantees:
            guarantee_result = {
                **guarantee_summary(rounds),
                "side_by_side": await paired_guarantees(ctx, compared, first, plan.rounds),
                "two_workers": scale_out_summary(rounds),
            }
            first += 2 * plan.rounds
        tracing_result = None
        if plan.tracing_users is not None:
            tracing_result = await tracings(ctx, plan.tracing_users, first, plan.tracing_pairs)
        progress(f"baseline: {plan.baseline_users:,} users, one transaction each")
        base_result = await baseline(ctx, plan.baseline_users)
    optional = {
        "half_load_warm_up": half_warm_result,
        "idle_cost": idle_cost_result,
        "guarantees": guarantee_result,
        "tracing": tracing_result,
    }
    return {
        "floods": floods,
        "fresh_memory": fresh_memory,
        "idle": idle_result,
        "half_load": half_result,
        "baseline": base_result,
        "reference": reference,
        "last_worker_peak_rss_mib": round(worker_rss, 1),
        **{name: value for name, value in optional.items() if value is not None},
    }


def progress(line: str) -> None:
    print(f"  … {line}", file=sys.stderr, flush=True)


def worker_settings(env: dict[str, str]) -> dict[str, str]:
    """The MIGRATOR_* settings the worker ran with beyond its defaults (for the JSON)."""
    return {name: value for name, value in sorted(env.items()) if name.startswith("MIGRATOR_")}


def git_commit() -> str | None:
    """The commit measured, ``+dirty`` when the work tree differs: figures move with the code."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def shown(path: Path) -> str:
    """A path as the operator would type it: relative to the checkout when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def run(plan: Plan) -> dict[str, Any]:
    directory = plan.stack_dir
    progress(f"fresh stack in {shown(directory)}")
    started_at = datetime.now(UTC)
    try:
        env = fresh_stack(directory)
        results = asyncio.run(measure(plan, env, directory))
    finally:
        stack_down(directory)
    drop_data(directory)
    return {
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "quick": plan.quick,
        "commit": git_commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "plan": {
            "sizes": list(plan.sizes),
            "idle_requests": plan.idle_requests,
            "idle_gap_s": plan.idle_gap_s,
            "half_load_s": plan.half_load_s,
            "half_load_warm": plan.half_load_warm,
            "memory_price": plan.memory_price,
            "baseline_users": plan.baseline_users,
            "flood_only": plan.flood_only,
            "guarantee_users": plan.guarantee_users,
            "tracing_users": plan.tracing_users,
            "tracing_pairs": plan.tracing_pairs,
            "rounds": plan.rounds,
            "idle_window_s": plan.idle_window.seconds if plan.idle_window else None,
            "app_id": APP_ID,
            "worker_env": worker_settings(env),
        },
        **results,
    }


def run_core(plan: Plan) -> None:
    """``--core``: the batch applier alone (scripts/bench_core.py) on a fresh stack."""
    directory = plan.stack_dir
    try:
        env = fresh_stack(directory)
        for size in plan.sizes:
            done = subprocess.run(
                [sys.executable, str(ROOT / "scripts" / "bench_core.py"), "--users", str(size)],
                cwd=ROOT,
                env=env,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                lines = [line for line in done.stderr.splitlines() if line.strip()]
                raise BenchError(f"core benchmark failed: {one_line(lines[-1] if lines else '?')}")
    finally:
        stack_down(directory)


# --- output ------------------------------------------------------------------------------------


def table(report: dict[str, Any]) -> str:
    """The printed table; a ``--flood-only`` report has the floods and counter lag alone."""
    floods = report["floods"]
    lines = [
        f"onboarding-migrator {report['commit'] or ''}, end to end ({report['machine']['cpus']} "
        "CPUs; Kafka, PostgreSQL, Redis, the worker and this client all on this machine)",
        "",
        "flood: N requests published at once; first publish -> N-th outcome read (read_committed)",
        f"  {'users':>9} {'seconds':>8} {'users/s':>9} {'RSS MiB':>8} | CPU s per 1,000 users: "
        f"{'worker':>6} {'kafka':>6} {'postgres':>8} {'redis':>6} {'client':>6}",
    ]
    for f in floods:
        cpu = f["cpu_s_per_1000_users"]
        lines.append(
            f"  {f['users']:>9,} {f['seconds']:>8.1f} {f['users_per_s']:>9,.0f} "
            f"{f['worker_peak_rss_mib']:>8.0f} | {'':22}{cpu['worker']:>6.2f} {cpu['kafka']:>6.2f} "
            f"{cpu['postgres']:>8.2f} {cpu['redis']:>6.2f} {cpu['bench client']:>6.2f}"
        )
    lines += [machine_line(f["users"], f["machine"]) for f in floods]
    lines += ["", "counter lag: GET stats `requested` vs outcomes on the topics (0.2 s polls)"]
    for f in floods:
        lag = f["counter_lag"]
        outcomes = ", ".join(f"{n:,} {name}" for name, n in f["outcomes"].items() if n)
        lines.append(
            f"  {f['users']:>9,} users: counter behind the topics by at most "
            f"{lag['behind_records']:,} records / {lag['behind_s']:.2f} s; ahead by at most "
            f"{lag['ahead_records']:,} (a batch committed in PostgreSQL, its Kafka transaction "
            f"not yet; {lag['polls']} polls); outcomes: {outcomes}"
        )
    lines += writes_lines(floods)
    lines += postgres_cpu_lines(floods)
    lines += bench_memory.lines(floods, report.get("fresh_memory"))
    lines += statement_lines(floods[-1])
    if "idle_cost" in report:
        lines += ["", *bench_idle.lines(report["idle_cost"])]
    if "idle" not in report:
        return "\n".join(lines)
    idle_r, half, base = report["idle"], report["half_load"], report["baseline"]
    lines += [
        "",
        "latency, publish -> outcome visible (read_committed):",
        f"  idle      {idle_r['requests']:>6} single requests {idle_r['gap_s']} s apart: "
        f"p50 {idle_r['p50_ms']:,.0f} ms, p90 {idle_r['p90_ms']:,.0f} ms, "
        f"max {idle_r['max_ms']:,.0f} ms",
        f"  half load {half['requests']:>6} requests at {half['achieved_rate_per_s']:,.0f}/s for "
        f"{half['seconds']:.0f} s (publisher linger {half['publisher_linger_ms']} ms): "
        f"p50 {half['p50_ms']:,.0f} ms, p99 {half['p99_ms']:,.0f} ms, max {half['max_ms']:,.0f} ms",
        f"{'':12}p50 of each second: {min(half['p50_ms_per_second']):,}"
        f"-{max(half['p50_ms_per_second']):,} ms; CPU s per 1,000 requests: worker "
        f"{half['cpu_s_per_1000_requests']['worker']:.2f}, kafka "
        f"{half['cpu_s_per_1000_requests']['kafka']:.2f}, postgres "
        f"{half['cpu_s_per_1000_requests']['postgres']:.2f}",
    ]
    if "half_load_warm_up" in report:
        warm = report["half_load_warm_up"]
        lines.append(
            f"{'':12}its warm-up just before (a throwaway half load, the broker compiling its "
            f"small-transaction paths): p50 {warm['p50_ms']:,.0f} ms, p99 {warm['p99_ms']:,.0f} "
            f"ms; Kafka CPU s per 1,000 requests {warm['cpu_s_per_1000_requests']['kafka']:.2f}"
        )
    if "guarantees" in report:
        lines += ["", *guarantee_lines(report["guarantees"])]
    if "tracing" in report:
        lines += ["", *tracing_lines(report["tracing"])]
    lines += [
        "",
        f"reference only (not the service): {base['what']}",
        f"  {base['users']:>9,} users: {base['users_per_s']:,.0f} users/s "
        f"({base['seconds']:.1f} s; CPU s/1,000 users: postgres "
        f"{base['cpu_s_per_1000_users']['postgres']:.2f}, redis "
        f"{base['cpu_s_per_1000_users']['redis']:.2f})",
    ]
    lines += reference_lines(report["reference"])
    return "\n".join(lines)


def writes_lines(floods: Sequence[dict[str, Any]]) -> list[str]:
    """What PostgreSQL wrote per flood: why its CPU per user grows with its tables."""
    lines = ["", "PostgreSQL's writes (pg_stat_wal, pg_stat_checkpointer, pg_stat_io; 8 KiB pages)"]
    for f in floods:
        w = f.get("postgres_writes")
        if not w:
            continue
        lines.append(
            f"  {f['users']:>9,} users: WAL {w['wal_bytes_per_user'] / 1024:.1f} KiB a user "
            f"({w['full_page_images_per_user']:.2f} full-page images a user, "
            f"{w['checkpoints']} checkpoints); pages written per 1,000 users by the "
            f"checkpointer {w['pages_by_checkpointer_per_1000_users']:,.0f}, the background "
            f"writer {w['pages_by_bgwriter_per_1000_users']:,.0f}, backends "
            f"{w['pages_by_backends_per_1000_users']:,.0f}; read back by backends "
            f"{w['pages_read_by_backends_per_1000_users']:,.0f}; autovacuum and autoanalyze runs "
            f"{w['autovacuum_runs']}"
        )
    return lines


def postgres_cpu_lines(floods: Sequence[dict[str, Any]]) -> list[str]:
    """PostgreSQL's CPU per flood by kind of process and by fifth: which part grows with its
    tables (see ``bench_pgcpu``)."""
    lines = [
        "",
        "PostgreSQL's CPU s per 1,000 users by process (backends run the statements; "
        "background: checkpointer, writers, I/O workers) and by fifth of the flood",
    ]
    for f in floods:
        cpu = f.get("postgres_cpu")
        if not cpu:
            continue
        kinds = ", ".join(
            f"{kind} {value:.3f}" for kind, value in cpu["by_kind_per_1000_users"].items()
        )
        fifths = " ".join("–" if v is None else f"{v:.3f}" for v in cpu["by_fifth_per_1000_users"])
        lines.append(f"  {f['users']:>9,} users: {kinds}; fifths {fifths}")
    return lines


def statement_lines(flood: dict[str, Any]) -> list[str]:
    """PostgreSQL's top statements of the last flood, by total execution time."""
    top = (flood.get("postgres_top_statements") or [])[:PRINTED_STATEMENTS]
    lines = ["", f"PostgreSQL during the last flood (pg_stat_statements, top {len(top)} by time):"]
    for s in top:
        lines.append(
            f"  {s['share'] * 100:5.1f}% {s['total_ms'] / 1000:6.2f} s {s['calls']:>7,} calls "
            f"{s['rows']:>9,} rows  {s['statement'][:90]}"
        )
    return lines


def reference_lines(ref: dict[str, Any]) -> list[str]:
    """The hand-written pipeline's line, and the service's flood of its round against it."""
    cpu, service = ref["cpu_s_per_1000_users"], ref["service"]
    ratios = ref["ratios"]
    return [
        "",
        f"hand-written pipeline ({ref['what']}), on the same servers, in each of {len(ratios)} "
        "round(s) with the service's flood of the same size; the median round:",
        f"  {ref['users']:>9,} users: {ref['users_per_s']:,.0f} users/s ({ref['seconds']:.1f} s); "
        f"CPU s per 1,000 users: its process {cpu['reference']:.2f}, kafka {cpu['kafka']:.2f}, "
        f"postgres {cpu['postgres']:.2f}, redis {cpu['redis']:.2f}",
        f"  service / hand-written = {ref['ratio']:.2f} ({service['users_per_s']:,.0f} / "
        f"{ref['users_per_s']:,.0f} users/s); CPU per 1,000 users: worker "
        f"{service['worker_cpu_s_per_1000_users']:.2f} s, hand-written {cpu['reference']:.2f} s; "
        f"each round: {', '.join(f'{r:.2f}' for r in ratios)}",
    ]


def side_by_side(summary: dict[str, Any], what: str) -> list[str]:
    """A comparison's table: a header, then a row per flood in the order they ran."""
    lines = [
        f"  {what:<14} {'users/s':>9} {'RSS MiB':>8} | CPU s per 1,000 users: "
        f"{'worker':>6} {'kafka':>6} {'postgres':>8} {'redis':>6}"
    ]
    for mode in summary["order"]:
        run, cpu = summary[mode], summary[mode]["cpu_s_per_1000_users"]
        lines.append(
            f"  {mode:<14} {run['users_per_s']:>9,.0f} {run['worker_peak_rss_mib']:>8.0f} | "
            f"{'':22}{cpu['worker']:>6.2f} {cpu['kafka']:>6.2f} {cpu['postgres']:>8.2f} "
            f"{cpu['redis']:>6.2f}"
        )
    return lines


def guarantee_lines(summary: dict[str, Any]) -> list[str]:
    """The table's exactly-once vs at-least-once section."""
    rounds = summary["rounds"]
    lines = [
        f"exactly-once vs at-least-once: the flood again on {summary['users']:,} freshly seeded "
        f"users each, a fresh worker per guarantee, {len(rounds)} round(s) in rotated order; "
        "the median round:",
        *side_by_side(summary, "guarantee"),
    ]
    cost = summary["exactly_once_cost_pct_of_throughput"]
    cpu = summary["worker_cpu_s_per_1000_users"]
    lines.append(
        f"  exactly-once costs {'n/a' if cost is None else f'{cost:.1f} %'} of throughput "
        f"({summary['exactly_once']['users_per_s']:,.0f} vs "
        f"{summary['at_least_once']['users_per_s']:,.0f} users/s); worker CPU per 1,000 users "
        f"{cpu['exactly_once']:.2f} vs {cpu['at_least_once']:.2f} s "
        f"({_pct(summary['exactly_once_extra_worker_cpu_pct'])}); each round: "
        + ", ".join(
            "n/a"
            if r["exactly_once_cost_pct_of_throughput"] is None
            else f"{r['exactly_once_cost_pct_of_throughput']:.1f} %"
            for r in rounds
        )
    )
    if summary.get("side_by_side"):
        lines += paired_guarantee_lines(summary["side_by_side"])
    if summary.get("two_workers"):
        lines += ["", *scale_out_lines(summary["two_workers"])]
    return lines


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f} %"


def paired_rows(summary: dict[str, Any], what: str, modes: Sequence[str]) -> list[str]:
    """The median round's two workers side by side: partitions, share, rate, CPU per user."""
    lines = [
        f"  {what:<14} {'partitions':<12} {'users':>7} {'users/s':>9} "
        f"{'worker CPU s per 1,000 users':>29}"
    ]
    for mode in modes:
        run = summary[mode]
        partitions = ",".join(str(p) for p in run["partitions"])
        lines.append(
            f"  {mode:<14} {partitions:<12} {run['users']:>7,} {run['users_per_s']:>9,.0f} "
            f"{run['worker_cpu_s_per_1000_users']:>29.3f}"
        )
    return lines


def tracing_lines(summary: dict[str, Any]) -> list[str]:
    """The table's tracing section: the median round's two workers, then every round's cost."""
    sampler = summary["on"].get("sampler") or {}
    sampled = " ".join(f"{k}={v}" for k, v in sampler.items()) or "every span"
    pairs = summary["pairs"]
    each = ", ".join(_pct(p["extra_cpu_pct"]) for p in pairs)
    return [
        f"tracing off and on side by side: two fresh workers in one group answering one flood of "
        f"{summary['users']:,} freshly seeded users, each its own partitions, {len(pairs)} "
        f"round(s), alternating which starts first (on: {sampled} exported over OTLP/HTTP to a "
        "receiver in a process of its own); the median round:",
        *paired_rows(summary, "tracing", ("off", "on")),
        f"  tracing costs the worker {_pct(summary['extra_cpu_pct'])} CPU per user (each round: "
        f"{each}); the traced worker's rate {_pct(_negated(summary['rate_cost_pct']))} against "
        f"the untraced one's; {summary['spans_received']:,} spans received",
    ]


def paired_guarantee_lines(summary: dict[str, Any]) -> list[str]:
    """Exactly-once and at-least-once side by side, under the guarantees' rounds."""
    pairs = summary["pairs"]
    each = ", ".join(_pct(_negated(p["rate_cost_pct"])) for p in pairs)
    return [
        f"  side by side: two fresh workers in one group, one per guarantee, answering one flood "
        f"of {summary['users']:,} freshly seeded users, each its own partitions, {len(pairs)} "
        "round(s), alternating which starts first (they share the broker, whose transaction work "
        "slows both: the worker's own cost); the median round:",
        *paired_rows(summary, "guarantee", GUARANTEES),
        f"  the exactly-once worker's rate {_pct(_negated(summary['rate_cost_pct']))} against the "
        f"at-least-once one's (each round: {each}); its CPU per user "
        f"{_pct(summary['extra_cpu_pct'])}",
    ]


def _negated(value: float | None) -> float | None:
    return None if value is None else -value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--users",
        type=parse_sizes,
        metavar="N[,N…]",
        help=f"flood sizes, e.g. 10000,100000 (default {DEFAULT_USERS:,}; --quick {QUICK_USERS:,})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test for CI: 2,000 users, 5 idle requests, 5 s half load; no thresholds",
    )
    parser.add_argument("--json", metavar="PATH", help="where to write the JSON report")
    parser.add_argument(
        "--stack-dir",
        metavar="DIR",
        help="where the fresh stack lives (default .stack/bench; wiped first, JSON reports kept)",
    )
    parser.add_argument(
        "--guarantees",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="exactly-once vs at-least-once floods (default: on, off with --quick)",
    )
    parser.add_argument(
        "--tracing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="tracing off vs on floods, spans exported over OTLP/HTTP (default: on, off with "
        "--quick)",
    )
    parser.add_argument(
        "--tracing-pairs",
        type=positive,
        metavar="N",
        help=f"rounds of a traced and an untraced worker side by side (default {TRACING_PAIRS}, "
        "1 with --quick)",
    )
    parser.add_argument(
        "--rounds",
        type=positive,
        metavar="N",
        help=f"rounds of the service / at-least-once / hand-written floods (default {ROUNDS}, 1 "
        "with --quick)",
    )
    parser.add_argument(
        "--flood-only",
        action="store_true",
        help="only the floods (what scripts/bench --compare needs): no idle, half load, baseline",
    )
    parser.add_argument(
        "--core",
        action="store_true",
        help="only the batch applier (scripts/bench_core.py): batches, no Kafka, no worker",
    )
    args = parser.parse_args(argv)
    # `make bench` takes no arguments: the environment stands in for them (BENCH_QUICK=1 in CI).
    try:
        if args.users is None and os.environ.get("BENCH_USERS"):
            args.users = parse_sizes(os.environ["BENCH_USERS"])
    except argparse.ArgumentTypeError as exc:
        parser.error(f"BENCH_USERS: {exc}")
    args.quick = args.quick or os.environ.get("BENCH_QUICK", "") in {"1", "true", "yes"}
    try:
        plan = build_plan(args)
        if args.core:
            run_core(plan)
            return 0
        report = run(plan)
        plan.json_path.parent.mkdir(parents=True, exist_ok=True)
        plan.json_path.write_text(json.dumps(report, indent=2) + "\n")
    except BenchError as exc:
        print(f"bench: {one_line(exc, 600)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one-line promise holds for surprises too
        print(f"bench: unexpected {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1
    print(table(report))
    print(f"\nJSON: {plan.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
