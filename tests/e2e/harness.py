"""End-to-end helpers: a fresh local stack per test module, workers as real processes.

Topic names are fixed by the contract, so each module gets its own Kafka (and databases) rather
than sharing topics with other tests. Outcomes are read back by a read_committed consumer.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from agents.jobs.schema import apply_schema
from agents.jobs.seed import SeedOptions, generate, write_rows
from streams import topics
from streams.cli.kafka_io import read_records
from streams.connections import connect
from streams.settings import Settings
from streams.stack.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
MIGRATOR = [sys.executable, "-m", "streams.cli"]
ADMIN_TOKEN = "e2e-admin-token-0123456789"
# Workers get it only when a test asks (extra_env); the admin token reads users' data too.
READ_TOKEN = "e2e-read-token-0123456789"


@dataclass
class Stack:
    directory: Path
    env: dict[str, str]

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)


def start_stack(*, brokers: int = 1) -> Stack:
    """A new stack in its own directory, schema applied; ``stop_stack`` removes it.
    ``brokers=3``: a Kafka cluster (``migrator stack up --brokers 3``)."""
    directory = Path(tempfile.mkdtemp(prefix="migrator-e2e-"))
    directory.chmod(0o755)
    up = subprocess.run(
        [*MIGRATOR, "stack", "up", "--dir", str(directory), "--brokers", str(brokers)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if up.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"could not start an e2e stack: {up.stderr}", pytrace=False)
    env = dict(os.environ)
    for line in up.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    result = Stack(directory, env)
    asyncio.run(_init_db(result.settings))
    return result


def stop_stack(stack: Stack) -> None:
    subprocess.run(
        [*MIGRATOR, "stack", "down", "--dir", str(stack.directory)], timeout=120, check=False
    )
    # Keep the workers' logs for a post-mortem (CI prints the failing test's tail already).
    keep = Path(tempfile.gettempdir()) / "migrator-e2e-logs"
    keep.mkdir(exist_ok=True)
    for log in stack.directory.glob("worker-*.log"):
        shutil.copy(log, keep / log.name)
    shutil.rmtree(stack.directory, ignore_errors=True)


async def _init_db(settings: Settings) -> None:
    conn = await connect(settings)
    try:
        await apply_schema(conn)
    finally:
        await conn.close()


def chromium() -> str:
    """Debian's chromium, for the dashboard tests in a real browser."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium not found: `scripts/test` installs it (scripts/install-test-tools)")
    return path


@dataclass
class Worker:
    stack: Stack
    app_id: str
    port: int = field(default_factory=free_port)
    token: str | None = ADMIN_TOKEN
    extra_env: dict[str, str] = field(default_factory=dict)
    # The worker's command line (a test may run a worker with a fault built in).
    command: list[str] = field(default_factory=lambda: [*MIGRATOR, "worker", "-l", "info"])
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> Worker:
        env = {
            **self.stack.env,
            "MIGRATOR_APP_ID": self.app_id,
            "MIGRATOR_WEB_PORT": str(self.port),
            "MIGRATOR_WEB_HOST": "127.0.0.1",
            "MIGRATOR_DATA_DIR": str(self.stack.directory / "workers" / f"{self.port}"),
            "MIGRATOR_BATCH_WITHIN_S": "0.1",
            **self.extra_env,
        }
        env.pop("MIGRATOR_ADMIN_TOKEN", None)
        if "MIGRATOR_READ_TOKEN" not in self.extra_env:
            env.pop("MIGRATOR_READ_TOKEN", None)  # not from the shell that runs the tests
        if self.token:
            env["MIGRATOR_ADMIN_TOKEN"] = self.token
        self.log_path = self.stack.directory / f"worker-{self.app_id}-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"worker exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                status, _ = self.get("/api/v1/onboarding/migration/health", timeout=3)
                if status == 200 and "Worker ready" in self.log_tail(400):
                    return
            except OSError:
                pass
            time.sleep(0.3)
        pytest.fail(f"worker not ready within {timeout_s}s:\n{self.log_tail()}")

    def get(self, path: str, *, token: str | None = None, timeout: float = 10) -> tuple[int, Any]:
        return self.request("GET", path, token=token, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        token: str | None = None,
        timeout: float = 30,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _decode(response.read(), response.headers)
        except urllib.error.HTTPError as error:
            payload = _decode(error.read(), error.headers)
            if isinstance(payload, dict):
                payload["_headers"] = dict(error.headers)
            return error.code, payload

    def stats(self) -> dict[str, Any]:
        status, body = self.get("/api/v1/onboarding/migration/stats")
        assert status == 200, body
        return dict(body)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                # A worker that does not stop is not left behind to load the next tests.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
                pytest.fail(f"worker did not stop within 60 s of signal {sig}:\n{self.log_tail()}")

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def cli(stack: Stack, *args: str) -> str:
    """``migrator ARGS`` against the stack; its standard output (failing the test on an error)."""
    result = subprocess.run(
        [*MIGRATOR, *args], env=stack.env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _decode(data: bytes, headers: Any) -> Any:
    if "json" in (headers.get("Content-Type") or ""):
        return json.loads(data)
    return data.decode("utf-8", errors="replace")


async def seed(stack: Stack, users: int, *, prefix: str, problem_ratio: float = 0.0) -> list[str]:
    from streams.connections import opened

    options = SeedOptions(users=users, prefix=prefix, seed=11, problem_ratio=problem_ratio)
    async with opened(stack.settings) as (pool, _):
        await write_rows(pool, generate(options))
    return [row[0] for row in generate(options)]


def request_value(user_id: str, **fields: Any) -> dict[str, Any]:
    return {"schema_version": 1, "request_id": str(uuid.uuid4()), "user_id": user_id, **fields}


async def produce(stack: Stack, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.settings.kafka_bootstrap_servers,
        acks="all",
        max_request_size=topics.MAX_REQUEST_RECORD_BYTES,
    )
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topics.REQUESTED, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def produce_requests(stack: Stack, values: list[dict[str, Any]]) -> list[str]:
    await produce(stack, [(v["user_id"].encode(), json.dumps(v).encode()) for v in values])
    return [v["request_id"] for v in values]


@dataclass
class Read:
    topic: str
    key: bytes | None
    value: dict[str, Any]
    headers: dict[str, bytes]
    partition: int


async def read_all(stack: Stack, *topic_names: str, idle_s: float = 1.5) -> list[Read]:
    """Everything committed so far on the topics (read_committed, from the beginning)."""
    return [
        Read(r.topic, r.key, json.loads(r.value), dict(r.headers), r.partition)
        async for r in read_records(stack.settings, *topic_names, idle_timeout_s=idle_s)
        if r.value is not None
    ]


async def wait_for_outcomes(
    stack: Stack, request_ids: list[str], *, timeout_s: float = 120
) -> dict[str, list[Read]]:
    """Outcomes by request id, once every id has at least one (or fail at the deadline)."""
    wanted = set(request_ids)
    deadline = time.monotonic() + timeout_s
    while True:
        reads = await read_all(stack, *topics.OUTCOME_TOPICS.values())
        by_id: dict[str, list[Read]] = {}
        for read in reads:
            if read.value["request_id"] in wanted:
                by_id.setdefault(read.value["request_id"], []).append(read)
        if len(by_id) == len(wanted) or time.monotonic() > deadline:
            missing = wanted - set(by_id)
            assert not missing, f"{len(missing)} request(s) got no outcome within {timeout_s}s"
            return by_id
        await asyncio.sleep(1)


async def reads_for(
    stack: Stack, topic: str, request_id: str, *, until: int = 1, timeout_s: float = 60
) -> list[Read]:
    """Records of ``topic`` for one request id, once there are ``until`` of them (or time is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        reads = [r for r in await read_all(stack, topic) if r.value["request_id"] == request_id]
        if len(reads) >= until or time.monotonic() > deadline:
            return reads
        await asyncio.sleep(0.5)


# --- Server faults (used by the fault-injection run, tests/e2e/faults.py) -----------------------
#
# `migrator stack up` keeps one pid file per server beside its working directory
# (DIR/<name>.pid, DIR/<name>/ is the cwd) and starts every server in its own session, so the
# pid is also the process group: SIGKILL of the group is a crash of that server and of all its
# children (PostgreSQL's backends included), and `stack up` on the directory starts what is
# missing again on the same ports.

STACK_SERVERS = ("postgres", "redis", "kafka")


def server_pid(stack: Stack, name: str) -> int | None:
    """The pid of one server of ``stack`` if it is running and really that stack's, else None."""
    if name not in STACK_SERVERS and not name.startswith("kafka-"):
        raise ValueError(f"unknown stack server {name!r}")
    try:
        pid = int((stack.directory / f"{name}.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    owned = cwd.is_relative_to((stack.directory / name).resolve())
    return pid if owned and state != "Z" else None


def kill_server(
    stack: Stack, name: str, *, timeout_s: float = 30, sig: int = signal.SIGKILL
) -> None:
    """Signal one server's whole process group (SIGKILL unless told) and wait until it is
    gone. (SIGINT is PostgreSQL's fast shutdown: the outage an operator's stop makes.)"""
    pid = server_pid(stack, name)
    if pid is None:
        raise RuntimeError(f"{name} of the stack in {stack.directory} is not running")
    os.killpg(pid, sig)
    deadline = time.monotonic() + timeout_s
    while server_pid(stack, name) is not None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} (pid {pid}) still runs {timeout_s:.0f}s after SIGKILL")
        time.sleep(0.05)


def restart_servers(stack: Stack, *, timeout_s: float = 240) -> None:
    """``migrator stack up --dir``: start the servers that are missing, as a supervisor would.

    The workers were started with the stack's addresses, so the servers must come back on the
    same ports; anything else is reported as an error rather than silently tested around.
    """
    up = subprocess.run(
        [*MIGRATOR, "stack", "up", "--dir", str(stack.directory)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=ROOT,
    )
    if up.returncode != 0:
        last = (up.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"`migrator stack up --dir {stack.directory}` failed: {last}")
    for line in up.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name in stack.env and stack.env[name] != value:
            raise RuntimeError(
                f"`stack up` brought {name} back at {value}, not {stack.env[name]}: "
                "the running workers cannot follow a port change"
            )
