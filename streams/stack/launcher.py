"""``migrator stack up | down | status``: Kafka, PostgreSQL and Redis as local background processes.

Everything a stack owns lives under its directory (data, logs, pid files, ``stack.json`` with its
ports), so several stacks run side by side and ``down`` stops exactly one of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streams.stack import kafka, postgres, redis_server
from streams.stack.errors import StackError
from streams.stack.kafka import Node
from streams.stack.ports import free_port, port_is_free
from streams.stack.process import ServerProcess

SERVERS = ("postgres", "redis", "kafka")
_READY_TIMEOUT_S = {"postgres": 60.0, "redis": 20.0, "kafka": 120.0}
MAX_BROKERS = 5


@dataclass
class Ports:
    kafka: int
    kafka_controller: int
    postgres: int
    redis: int
    # Brokers 2, 3, … of a cluster (``stack up --brokers N``): [client port, controller port].
    kafka_more: list[list[int]] = field(default_factory=list)

    @property
    def brokers(self) -> int:
        return 1 + len(self.kafka_more)

    @property
    def nodes(self) -> list[Node]:
        pairs = [[self.kafka, self.kafka_controller], *self.kafka_more]
        return [Node(i + 1, port, ctl) for i, (port, ctl) in enumerate(pairs)]


@dataclass(frozen=True)
class ServerStatus:
    name: str
    pid: int | None
    port: int
    answers: bool


def broker_name(node_id: int) -> str:
    """``kafka`` for the first broker (as a single-broker stack has always named it), then
    ``kafka-2``, ``kafka-3``: the name of its pid file, log and working directory."""
    return "kafka" if node_id == 1 else f"kafka-{node_id}"


def server_names(brokers: int) -> tuple[str, ...]:
    return ("postgres", "redis", *(broker_name(i) for i in range(1, brokers + 1)))


def _state_file(directory: Path) -> Path:
    return directory / "stack.json"


def _load_ports(directory: Path) -> Ports | None:
    try:
        return Ports(**json.loads(_state_file(directory).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def _servers(directory: Path, brokers: int) -> dict[str, ServerProcess]:
    return {name: ServerProcess(name, directory / name) for name in server_names(brokers)}


def _answers(name: str, ports: Ports) -> bool:
    if name.startswith("kafka"):
        node = ports.nodes[0 if name == "kafka" else int(name.split("-")[1]) - 1]
        return kafka.answers(node.port, brokers=ports.brokers)
    checks: dict[str, Callable[[], bool]] = {
        "postgres": lambda: postgres.answers(ports.postgres),
        "redis": lambda: redis_server.answers(ports.redis),
    }
    return checks[name]()


def exports(ports: Ports) -> list[str]:
    """Export lines for the stack; a cluster also names the replication the service must ask
    for (``kafka.replication``), so a worker started from them creates topics to match."""
    # Commas, not semicolons: the line is eval-ed by a shell. Faust and aiokafka take both.
    brokers = ",".join(f"127.0.0.1:{node.port}" for node in ports.nodes)
    lines = [
        f"export KAFKA_BROKER_URL=kafka://{brokers}",
        f"export DATABASE_URL={postgres.url(ports.postgres)}",
        f"export REDIS_URL={redis_server.url(ports.redis)}",
    ]
    if ports.brokers > 1:
        factor, min_isr = kafka.replication(ports.brokers)
        lines += [
            f"export MIGRATOR_TOPIC_REPLICATION_FACTOR={factor}",
            f"export MIGRATOR_TOPIC_MIN_INSYNC_REPLICAS={min_isr}",
        ]
    return lines


def _choose_ports(previous: Ports | None, running: dict[str, bool], brokers: int) -> Ports:
    """Keep a stack's ports across restarts when they are still free, else take new free ones."""

    taken: set[int] = set()

    def pick(old: int | None, in_use_by_us: bool) -> int:
        if old is not None and old not in taken and (in_use_by_us or port_is_free(old)):
            taken.add(old)
            return old
        port = free_port()
        while port in taken:
            port = free_port()
        taken.add(port)
        return port

    old_nodes = previous.nodes if previous else []
    chosen = []
    for node_id in range(1, brokers + 1):
        old = old_nodes[node_id - 1] if node_id <= len(old_nodes) else None
        ours = running[broker_name(node_id)]
        chosen.append(
            [
                pick(old.port if old else None, ours),
                pick(old.controller_port if old else None, ours),
            ]
        )
    return Ports(
        kafka=chosen[0][0],
        kafka_controller=chosen[0][1],
        postgres=pick(previous.postgres if previous else None, running["postgres"]),
        redis=pick(previous.redis if previous else None, running["redis"]),
        kafka_more=chosen[1:],
    )


def _broker_count(directory: Path, previous: Ports | None, asked: int | None) -> int:
    """How many brokers: as asked, else as the stack was made (a restart after a fault keeps
    its cluster), else one. A stack whose Kafka data was made for another count is refused:
    its nodes were formatted for another quorum of controllers."""
    made = previous.brokers if previous else None
    if asked is None:
        return made or 1
    if not 1 <= asked <= MAX_BROKERS:
        raise StackError(f"--brokers must be between 1 and {MAX_BROKERS}, not {asked}")
    if made is not None and made != asked and (directory / "kafka" / "data").exists():
        raise StackError(
            f"the stack in {directory} was made with {made} broker(s), not {asked}: "
            f"`migrator stack down --dir {directory}` and remove its kafka* directories first"
        )
    return asked


def up(directory: Path, *, brokers: int | None = None) -> Ports:
    """Start what is not running, wait until all of the stack answers, return its ports."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    previous = _load_ports(directory)
    count = _broker_count(directory, previous, brokers)
    servers = _servers(directory, count)
    running = {name: server.pid() is not None for name, server in servers.items()}
    ports = _choose_ports(previous, running, count)
    kafka_names = [broker_name(node.node_id) for node in ports.nodes]

    # Check every dependency before starting anything, so a missing one costs nothing.
    postgres.bin_dir()
    redis_server.binary()
    java = kafka.check_java()
    cp = kafka.classpath() if not all(running[name] for name in kafka_names) else ""

    if not running["postgres"]:
        data = postgres.init_cluster(servers["postgres"].workdir)
        argv = postgres.command(data, port=ports.postgres)
        servers["postgres"].start(argv, user=postgres.run_as())
    if not running["redis"]:
        workdir = servers["redis"].workdir
        servers["redis"].start(redis_server.command(workdir, port=ports.redis))
    workdirs = [servers[name].workdir for name in kafka_names]
    cluster_id = kafka.cluster_id_of(workdirs) or kafka.new_cluster_id()
    for node, name in zip(ports.nodes, kafka_names, strict=True):
        if running[name]:
            continue
        config = kafka.write_config(servers[name].workdir, node, ports.nodes)
        kafka.format_storage(java, cp, config, cluster_id)
        servers[name].start(kafka.command(java, cp, config, brokers=count))

    _state_file(directory).write_text(json.dumps(asdict(ports), indent=2) + "\n")
    for name in server_names(count):
        _wait_ready(name, servers[name], ports)
    return ports


def _wait_ready(name: str, server: ServerProcess, ports: Ports) -> None:
    """Poll until the server answers; fail fast with its log if its process died."""
    timeout_s = _READY_TIMEOUT_S[name.split("-")[0]]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.pid() is None:
            raise StackError(f"{name} exited during start-up; last log lines:\n{server.log_tail()}")
        if _answers(name, ports):
            return
        time.sleep(0.25)
    raise StackError(
        f"{name} did not answer within {timeout_s:.0f}s; "
        f"log: {server.log_file}\n{server.log_tail()}"
    )


def _count_of(directory: Path) -> int:
    previous = _load_ports(directory)
    return previous.brokers if previous else 1


def down(directory: Path) -> list[str]:
    """Stop this stack's servers, Kafka first; return the names of those stopped."""
    directory = directory.resolve()
    servers = _servers(directory, _count_of(directory))
    stopped = []
    kafka_names = [name for name in servers if name.startswith("kafka")]
    for name in (*reversed(kafka_names), "redis", "postgres"):
        # SIGINT is PostgreSQL's "fast" shutdown; Kafka and Redis shut down cleanly on SIGTERM.
        sig = 2 if name == "postgres" else 15
        if servers[name].stop(sig=sig):
            stopped.append(name)
    return stopped


def status(directory: Path) -> list[ServerStatus]:
    directory = directory.resolve()
    ports = _load_ports(directory)
    result = []
    for name, server in _servers(directory, _count_of(directory)).items():
        pid = server.pid()
        port = _port_of(name, ports)
        answers = pid is not None and ports is not None and _answers(name, ports)
        result.append(ServerStatus(name=name, pid=pid, port=port, answers=answers))
    return result


def _port_of(name: str, ports: Ports | None) -> int:
    if ports is None:
        return 0
    if name.startswith("kafka"):
        return ports.nodes[0 if name == "kafka" else int(name.split("-")[1]) - 1].port
    port: int = getattr(ports, name)
    return port
