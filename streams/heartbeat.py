"""The worker's heartbeat: every ``STATUS_EVERY_S`` it writes its row of ``worker_status`` (the
partitions it owns, their lag, what is in flight, its memory, its sampler's findings), which
``GET workers``, the dashboard and the re-validation sums read for the whole cluster.

The lag and process figures are computed here and borrowed by the web side's readouts.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from faust.types import TP
from mode import Service

from agents.stores import postgres
from streams import topics
from streams.context import ServiceContext
from streams.control_topic import worker_name

log = logging.getLogger(__name__)

# A worker whose last report is older than WORKER_GONE_S is gone.
STATUS_EVERY_S = 2.0
WORKER_GONE_S = 15.0


def owned_partitions(context: ServiceContext) -> list[int]:
    """The request partitions this worker owns now."""
    return sorted(tp.partition for tp in context.control.owned_partitions())


def owned_lag(context: ServiceContext) -> dict[int, int]:
    """Per request partition this worker owns: records fetched-or-waiting not yet answered
    (the highwater it last saw minus the next offset it will commit). No Kafka round trip;
    empty where the delivery guarantee does not track the next offset (at-least-once)."""
    consumer = context.app.consumer
    lag = {}
    for partition in owned_partitions(context):
        start = context.publisher.next_offset(partition)
        highwater = consumer.highwater(TP(topics.REQUESTED, partition))
        if highwater is not None and start is not None:
            lag[partition] = max(0, int(highwater) - int(start))
    return lag


def process_metrics() -> dict[str, float]:
    """The process's memory, CPU time, start time and open files, from /proc (Linux)."""
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        return {
            "process_resident_memory_bytes": float(stat[21]) * os.sysconf("SC_PAGE_SIZE"),
            "process_cpu_seconds_total": (float(stat[11]) + float(stat[12])) / ticks,
            "process_start_time_seconds": boot + float(stat[19]) / ticks,
            "process_open_fds": float(len(os.listdir("/proc/self/fd"))),
        }
    except (OSError, IndexError, ValueError, StopIteration):
        return {}


class StatusReporter(Service):
    """Writes this worker's ``worker_status`` row every ``STATUS_EVERY_S``."""

    def __init__(self, context: ServiceContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._context = context

    @Service.timer(STATUS_EVERY_S)
    async def _report(self) -> None:
        try:
            await self.report()
        except Exception as exc:  # noqa: BLE001 - PostgreSQL away: the next report will do
            log.debug("worker status not written: %s", exc)

    async def report(self) -> None:
        context = self._context
        if not context.resources.ready.is_set():
            return
        process = process_metrics()
        started = process.get("process_start_time_seconds", time.time())
        await postgres.save_worker_status(
            context.resources.pool,
            app_id=context.settings.app_id,
            worker=worker_name(),
            partitions=owned_partitions(context),
            lag=owned_lag(context),
            in_flight=context.in_flight.records,
            rss_bytes=int(process.get("process_resident_memory_bytes", 0)) or None,
            started_at=datetime.fromtimestamp(started, UTC),
            paused=context.control.current.paused,
            revalidation=context.revalidator.tally.as_dict(),
        )
