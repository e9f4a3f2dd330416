"""The run-control topic (``<app id>-control``, compacted): its records (``pause``,
``throttle``, ``cancel:<run id>``), written by operators (CLI, HTTP) and by workers that pause
themselves, and read from its beginning into a ``ControlState`` (the pure reducer is
``agents.core.control_state``).

The worker's side, which follows the topic and gates the lanes, is ``streams.control_watcher``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.core import control_state
from agents.core.control_state import ControlState, RunCancel
from streams import topics
from streams.connections import DependencyUnavailable, start_kafka_client, unreachable
from streams.partition_reader import PartitionReader
from streams.settings import Settings
from streams.topic_admin import ensure_topics

log = logging.getLogger(__name__)

_POLL_MS = 200


def pause_value(
    *,
    paused: bool,
    reason: str | None,
    by: str,
    auto: bool = False,
    figures: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``pause`` record; an auto-pause's ``figures`` (the spent budget's or the outage's) go
    with it as data, for the run events and hooks (an additive field)."""
    value: dict[str, Any] = {
        "paused": paused,
        "reason": reason,
        "by": by,
        "auto": auto,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    if figures is not None:
        value["figures"] = dict(figures)
    return value


def throttle_value(*, rate: float | None, by: str) -> dict[str, Any]:
    return {"rate": rate, "by": by, "at": datetime.now(UTC).isoformat(timespec="milliseconds")}


def cancel_value(
    *, run_id: str, by: str, reason: str | None, before: Mapping[int, int]
) -> dict[str, Any]:
    """The value of ``cancel:<run id>``: ``before`` is the request topic's end offsets, read
    just before (the run's records below them are cancelled; a replay lands above)."""
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    return RunCancel(run_id, at, by, reason, dict(before)).value()


async def request_ends(settings: Settings) -> dict[int, int]:
    """Each request partition's end offset (the last stable offset: every request published
    and committed so far is below it)."""
    reader = PartitionReader(settings.kafka_bootstrap_servers)
    try:
        await asyncio.wait_for(reader.start(), timeout=15)
    except Exception as exc:
        await reader.stop()
        raise DependencyUnavailable(unreachable("Kafka", settings.kafka_broker_url, exc)) from exc
    try:
        partitions = await reader.partitions(topics.REQUESTED)
        return await reader.ends(topics.REQUESTED, partitions)
    finally:
        await reader.stop()


async def started(client: AIOKafkaProducer | AIOKafkaConsumer, settings: Settings) -> None:
    """Start a client for one command; one that cannot reach Kafka is closed and refused in
    one line."""
    try:
        await asyncio.wait_for(start_kafka_client(client), timeout=15)
    except Exception as exc:
        raise DependencyUnavailable(unreachable("Kafka", settings.kafka_broker_url, exc)) from exc


async def publish_control(settings: Settings, key: str, value: dict[str, Any]) -> None:
    """Write one control record in a transaction of its own (as a worker's views do): within
    seconds it is written, or it never will be and the command says so in one line."""
    from streams.transactional_writer import KafkaUnavailable, TransactionalWriter

    await ensure_topics(settings)
    writer = TransactionalWriter(settings, topic=topics.control_topic(settings.app_id), role="cli")
    try:
        await writer.write([(key.encode(), json.dumps(value).encode())])
    except KafkaUnavailable as exc:
        raise DependencyUnavailable(str(exc)) from None
    finally:
        await writer.on_stop()


async def read_control(settings: Settings, *, timeout_s: float = 10.0) -> ControlState:
    """The control state as the topic holds it now (for the CLI)."""
    await ensure_topics(settings)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",  # a control write that did not commit never applies
    )
    await started(consumer, settings)
    try:
        tp = TopicPartition(topics.control_topic(settings.app_id), 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        state = ControlState()
        deadline = time.monotonic() + timeout_s
        while await consumer.position(tp) < end and time.monotonic() < deadline:
            batches = await consumer.getmany(tp, timeout_ms=_POLL_MS)
            for record in batches.get(tp, []):
                state = applied(state, record.key, record.value)
        return state
    finally:
        await consumer.stop()


def applied(state: ControlState, key: bytes | None, value: bytes | None) -> ControlState:
    if key is None:
        return state
    try:
        document = None if value is None else json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        log.warning("control record %r is not JSON: ignored", key)
        return state
    if document is not None and not isinstance(document, dict):
        return state
    return control_state.apply(state, key.decode("utf-8", "replace"), document)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
