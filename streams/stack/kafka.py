"""Apache Kafka (KRaft: one node, or a cluster) from the Apache artifacts on Maven Central.

Maven resolves ``org.apache.kafka:kafka_2.13`` (the broker) and ``kafka-tools`` (Kafka's own
command-line tools, run by ``migrator stack kafka-cli``) with their runtime dependencies into the
user's Maven cache once; the resulting class path is cached beside a generated pom, so later
starts need neither Maven nor the network.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.stack.errors import MissingDependency, StackError

KAFKA_VERSION = "4.3.1"
SLF4J_VERSION = "2.0.17"
LOG4J_VERSION = "2.25.4"
HEAP = "-Xmx768m"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.onboarding-migrator</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.kafka_request.name = kafka.request.logger
logger.kafka_request.level = WARN
"""


def check_java() -> str:
    """Path of a Java 17+ runtime, or a MissingDependency naming how to get one."""
    java = shutil.which("java")
    if java is None:
        raise MissingDependency(
            "java not found: Kafka needs Java 17 or newer "
            "(Debian: apt-get install openjdk-17-jre-headless)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', out.stderr + out.stdout)
    if match is None or int(match.group(1)) < 17:
        raise MissingDependency(
            f"{java} is not Java 17 or newer: install openjdk-17-jre-headless and put it on PATH"
        )
    return java


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "onboarding-migrator" / f"kafka-{KAFKA_VERSION}"


def classpath() -> str:
    """The broker's class path, resolved by Maven on first use and cached afterwards."""
    cached = cache_dir() / "classpath.txt"
    if cached.exists():
        entries = cached.read_text().strip().split(os.pathsep)
        complete = any(Path(entry).name == f"kafka-tools-{KAFKA_VERSION}.jar" for entry in entries)
        if complete and all(Path(entry).is_file() for entry in entries):
            return os.pathsep.join(entries)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingDependency(
            "mvn not found: Maven resolves Apache Kafka from Maven Central "
            "(Debian: apt-get install maven)"
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    pom = cached.parent / "pom.xml"
    pom.write_text(_POM.format(kafka=KAFKA_VERSION, slf4j=SLF4J_VERSION, log4j=LOG4J_VERSION))
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:build-classpath",
            f"-Dmdep.outputFile={cached}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not cached.exists():
        detail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise StackError(
            f"Maven could not resolve org.apache.kafka:kafka_2.13:{KAFKA_VERSION}: "
            + " | ".join(detail)
        )
    return cached.read_text().strip()


# Kafka's own tools, by the name of their shell script without ``kafka-`` and ``.sh``.
TOOLS = {
    "topics": "org.apache.kafka.tools.TopicCommand",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "transactions": "org.apache.kafka.tools.TransactionsCommand",
    "configs": "kafka.admin.ConfigCommand",
}


def tool_command(tool: str, args: list[str]) -> list[str]:
    """The java command line of one of Kafka's tools (``TOOLS``), quiet logging."""
    return [check_java(), "-cp", classpath(), "-Dlog4j2.level=WARN", TOOLS[tool], *args]


# The broker's logger of every request it completes, with the request and its response: WARN in
# the stack's logging configuration, switched to DEBUG by ``set_request_log`` while a bench or a
# test reads what the service asked of the broker (``completed_requests``).
REQUEST_LOGGER = "kafka.request.logger"
_COMPLETED_REQUEST = re.compile(r"Completed request:(\{.*\}) \(kafka\.request\.logger\)\s*$")


def set_request_log(bootstrap: str, level: str, *, node_id: int = 1) -> None:
    """Set the request logger of broker ``node_id`` (the stack's first, ``broker_name(1)``, by
    default) to ``level`` (DEBUG: every completed request is written to its log) through Kafka's
    own ``ConfigCommand`` (a dynamic broker-logger config: no restart). Raises ``StackError``
    with the tool's last line."""
    argv = tool_command(
        "configs",
        [
            "--bootstrap-server",
            bootstrap,
            "--entity-type",
            "broker-loggers",
            "--entity-name",
            str(node_id),
            "--alter",
            "--add-config",
            f"{REQUEST_LOGGER}={level}",
        ],
    )
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise StackError("Kafka's ConfigCommand did not finish in 60 s") from None
    if done.returncode != 0:
        last = ([line for line in done.stderr.splitlines() if line.strip()] or ["?"])[-1]
        raise StackError(f"setting {REQUEST_LOGGER}={level} failed: {last}")


def completed_requests(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The requests the request logger wrote among ``lines`` (its JSON: ``requestHeader``,
    ``request``, ``response``, ``listener``, times); other lines, and a line cut short, skipped."""
    for line in lines:
        match = _COMPLETED_REQUEST.search(line)
        if match is None:
            continue
        try:
            record = json.loads(match.group(1))
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


@dataclass(frozen=True)
class Node:
    """One broker of the cluster: its KRaft node id and its two loopback ports."""

    node_id: int
    port: int
    controller_port: int


def replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of ``brokers``.

    Three copies with two in sync is what production runs: one broker may be away (a crash, a
    rolling restart) and every acknowledged write still has a second copy. One broker can only
    hold one copy; two brokers hold two, with one in sync so either may restart.
    """
    factor = min(brokers, 3)
    return factor, max(1, factor - 1)


def write_config(workdir: Path, node: Node, cluster: Sequence[Node]) -> Path:
    """server.properties tuned for a small shared machine.

    Every node is broker and controller (combined mode): three JVMs rather than six on a
    2-core machine, and a quorum of three voters keeps a controller through the loss of any
    one node, which is all the fault tests take away. Internal topics (offsets, transaction
    state) get ``replication(len(cluster))``, so a transaction survives its coordinator's
    broker.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    factor, min_isr = replication(len(cluster))
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in cluster)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": (
            f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "1",
        "default.replication.factor": str(factor),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(factor),
        "offsets.topic.num.partitions": "10",
        # Without these, InitProducerId fails on a single broker and transactions never start.
        "transaction.state.log.replication.factor": str(factor),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": str(factor),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4" if len(cluster) == 1 else "2",
        "num.replica.fetchers": "1",
        "num.recovery.threads.per.data.dir": "1",
        "log.cleaner.threads": "1",
        "log.retention.hours": "168",
        "log.segment.bytes": str(64 * 1024 * 1024),
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
    }
    config = workdir / "server.properties"
    config.write_text("".join(f"{key}={value}\n" for key, value in props.items()))
    (workdir / "log4j2.properties").write_text(_LOG4J2)
    return config


def new_cluster_id() -> str:
    """A KRaft cluster id that no argument parser can take for an option.

    Kafka's ids are URL-safe base64 of 16 random bytes; one in 64 begins with ``-``. Like
    Kafka's own ``Uuid.randomUuid``, draw again rather than hand such an id to the storage tool
    (it is also passed as ``--cluster-id=…``, which would accept it).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def cluster_id_of(workdirs: Sequence[Path]) -> str | None:
    """The cluster id a node of this stack was formatted with, if one was."""
    for workdir in workdirs:
        try:
            text = (workdir / "data" / "meta.properties").read_text()
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "cluster.id":
                return value.strip()
    return None


def format_storage(java: str, cp: str, config: Path, cluster_id: str) -> None:
    """Format the KRaft metadata log once; a formatted directory is left alone.

    Every node of a cluster is formatted with the same ``cluster_id`` (``cluster_id_of`` the
    nodes already formatted, else ``new_cluster_id``): nodes of different ids refuse each other.
    """
    data = config.parent / "data"
    if (data / "meta.properties").exists():
        return
    result = subprocess.run(
        [
            java,
            "-cp",
            cp,
            *_jvm_log_flags(config.parent),
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError("kafka storage format failed: " + (result.stdout + result.stderr)[-800:])


def heap(brokers: int) -> str:
    """The JVM heap of one broker: 768 MiB alone; 384 MiB each of three, which carry the same
    load between them (measured: README, "A cluster of three brokers")."""
    return HEAP if brokers == 1 else "-Xmx384m"


def command(java: str, cp: str, config: Path, *, brokers: int = 1) -> list[str]:
    return [
        java,
        heap(brokers),
        "-Xms128m" if brokers > 1 else "-Xms256m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        *_jvm_log_flags(config.parent),
        "-cp",
        cp,
        "kafka.Kafka",
        str(config),
    ]


def _jvm_log_flags(workdir: Path) -> list[str]:
    return [f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}"]


async def _answers(bootstrap: str, brokers: int) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    # A broker that is still starting refuses connections; that is the expected answer, not news.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(client.start(), timeout=4)
        cluster = await asyncio.wait_for(client.describe_cluster(), timeout=4)
        registered = len(cluster.get("brokers") or [])
        return registered >= brokers and cluster.get("controller_id", -1) != -1
    except Exception:  # noqa: BLE001 - any failure means "not answering yet"
        return False
    finally:
        try:
            await client.close()
        except Exception:  # noqa: BLE001 - closing a client that never started
            pass


def answers(port: int, *, brokers: int = 1) -> bool:
    """True once the broker serves metadata, knows its controller and sees ``brokers`` brokers
    registered (a topic of replication factor 3 cannot be made before all three are)."""
    return asyncio.run(_answers(f"127.0.0.1:{port}", brokers))
