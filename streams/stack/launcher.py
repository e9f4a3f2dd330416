"""``migrator stack up | down | status``: Kafka, PostgreSQL and Redis as local background processes.

Everything a stack owns lives under its directory (data, logs, pid files, ``stack.json`` with its
ports), so several stacks run side by side and ``down`` stops exactly one of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from streams.stack import kafka, postgres, redis_server
from streams.stack.errors import StackError
from streams.stack.ports import free_port, port_is_free
from streams.stack.process import ServerProcess

SERVERS = ("postgres", "redis", "kafka")
_READY_TIMEOUT_S = {"postgres": 60.0, "redis": 20.0, "kafka": 120.0}


@dataclass
class Ports:
    kafka: int
    kafka_controller: int
    postgres: int
    redis: int


@dataclass(frozen=True)
class ServerStatus:
    name: str
    pid: int | None
    port: int
    answers: bool


def _state_file(directory: Path) -> Path:
    return directory / "stack.json"


def _load_ports(directory: Path) -> Ports | None:
    try:
        return Ports(**json.loads(_state_file(directory).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def _servers(directory: Path) -> dict[str, ServerProcess]:
    return {name: ServerProcess(name, directory / name) for name in SERVERS}


def _answers(name: str, ports: Ports) -> bool:
    checks: dict[str, Callable[[], bool]] = {
        "postgres": lambda: postgres.answers(ports.postgres),
        "redis": lambda: redis_server.answers(ports.redis),
        "kafka": lambda: kafka.answers(ports.kafka),
    }
    return checks[name]()


def exports(ports: Ports) -> list[str]:
    return [
        f"export KAFKA_BROKER_URL=kafka://127.0.0.1:{ports.kafka}",
        f"export DATABASE_URL={postgres.url(ports.postgres)}",
        f"export REDIS_URL={redis_server.url(ports.redis)}",
    ]


def _choose_ports(previous: Ports | None, running: dict[str, bool]) -> Ports:
    """Keep a stack's ports across restarts when they are still free, else take new free ones."""

    def pick(field: str, in_use_by_us: bool) -> int:
        old: int | None = getattr(previous, field) if previous else None
        if old is not None and (in_use_by_us or port_is_free(old)):
            return old
        return free_port()

    return Ports(
        kafka=pick("kafka", running["kafka"]),
        kafka_controller=pick("kafka_controller", running["kafka"]),
        postgres=pick("postgres", running["postgres"]),
        redis=pick("redis", running["redis"]),
    )


def up(directory: Path) -> Ports:
    """Start what is not running, wait until all of the stack answers, return its ports."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    servers = _servers(directory)
    running = {name: server.pid() is not None for name, server in servers.items()}
    ports = _choose_ports(_load_ports(directory), running)

    # Check every dependency before starting anything, so a missing one costs nothing.
    postgres.bin_dir()
    redis_server.binary()
    java = kafka.check_java()
    cp = kafka.classpath() if not running["kafka"] else ""

    if not running["postgres"]:
        data = postgres.init_cluster(servers["postgres"].workdir)
        argv = postgres.command(data, port=ports.postgres)
        servers["postgres"].start(argv, user=postgres.run_as())
    if not running["redis"]:
        workdir = servers["redis"].workdir
        servers["redis"].start(redis_server.command(workdir, port=ports.redis))
    if not running["kafka"]:
        config = kafka.write_config(
            servers["kafka"].workdir, port=ports.kafka, controller_port=ports.kafka_controller
        )
        kafka.format_storage(java, cp, config)
        servers["kafka"].start(kafka.command(java, cp, config))

    _state_file(directory).write_text(json.dumps(asdict(ports), indent=2) + "\n")
    for name in SERVERS:
        _wait_ready(name, servers[name], ports)
    return ports


def _wait_ready(name: str, server: ServerProcess, ports: Ports) -> None:
    """Poll until the server answers; fail fast with its log if its process died."""
    deadline = time.monotonic() + _READY_TIMEOUT_S[name]
    while time.monotonic() < deadline:
        if server.pid() is None:
            raise StackError(f"{name} exited during start-up; last log lines:\n{server.log_tail()}")
        if _answers(name, ports):
            return
        time.sleep(0.25)
    raise StackError(
        f"{name} did not answer within {_READY_TIMEOUT_S[name]:.0f}s; "
        f"log: {server.log_file}\n{server.log_tail()}"
    )


def down(directory: Path) -> list[str]:
    """Stop this stack's servers, Kafka first; return the names of those stopped."""
    directory = directory.resolve()
    servers = _servers(directory)
    stopped = []
    for name in ("kafka", "redis", "postgres"):
        # SIGINT is PostgreSQL's "fast" shutdown; Kafka and Redis shut down cleanly on SIGTERM.
        sig = 2 if name == "postgres" else 15
        if servers[name].stop(sig=sig):
            stopped.append(name)
    return stopped


def status(directory: Path) -> list[ServerStatus]:
    directory = directory.resolve()
    ports = _load_ports(directory)
    result = []
    for name, server in _servers(directory).items():
        pid = server.pid()
        port = getattr(ports, name) if ports else 0
        answers = pid is not None and ports is not None and _answers(name, ports)
        result.append(ServerStatus(name=name, pid=pid, port=port, answers=answers))
    return result
