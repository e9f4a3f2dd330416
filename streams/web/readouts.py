"""The read model of the HTTP side: what the views answer, computed from one worker's context.

The views only parse, call one method here and render; the sums are pure (``totals``), the SQL
is in the store, so this class holds just the I/O that joins them. Writes (publishing requests,
run control) are ``streams.web.admin``'s; the worker's own status row is the heartbeat's.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from faust.types import TP

from agents.core import counters
from agents.core.answer_audit import KINDS
from agents.core.cohorts import shown_state
from agents.core.revalidation_tally import combine
from agents.jobs.validation import ValidationReport, validate_user
from agents.stores import answer_audit as answer_store
from agents.stores import postgres
from agents.stores.runs import run_failures, run_summaries
from schemas.events import ErrorCode, is_retryable
from streams import topics
from streams.control_topic import worker_name
from streams.faust_internals import stats_of
from streams.heartbeat import (
    WORKER_GONE_S,
    owned_lag,
    owned_partitions,
    process_metrics,
)
from streams.history import EVERY_S as HISTORY_EVERY_S
from streams.web.health import CHECK_TIMEOUT_S, Outages, health_checks
from streams.web.metrics import WorkerMetrics
from streams.web.totals import owned_totals, progress_answer

if TYPE_CHECKING:
    from streams.context import ServiceContext

# How old the runs' figures in progress and /metrics may be.
RUNS_EVERY_S = 5.0
# How old the table sizes in stats and /metrics may be: they move by megabytes a minute, while
# the dashboard and `stats --watch` poll every second or two (and a bench every 0.2 s); sizing
# every table on each poll was a query per poll across the whole catalog.
TABLES_EVERY_S = 10.0


def _now_s() -> int:
    return int(time.time())


@dataclass
class Readouts:
    context: ServiceContext
    _runs_cache: tuple[float, list[dict[str, Any]]] | None = field(default=None, init=False)
    _tables_cache: tuple[float, list[postgres.TableSize]] | None = field(default=None, init=False)
    _outages: Outages = field(default_factory=Outages, init=False)

    def worker_name(self) -> str:
        """``host:pid``: how metrics and ``worker_status`` name this worker."""
        return worker_name()

    async def backlog(self) -> dict[int, int]:
        """Request records not answered yet, per partition, whichever worker owns it: the
        partition's end offset (last stable) minus the offset the app id committed."""
        settings = self.context.settings
        partitions = [TP(topics.REQUESTED, p) for p in range(settings.topic_partitions)]
        ends = await asyncio.wait_for(
            self.context.app.consumer.highwaters(*partitions), timeout=CHECK_TIMEOUT_S
        )
        committed = await self.context.resources.group_offsets.committed()
        return {
            tp.partition: max(0, int(end) - committed.get(tp.partition, 0))
            for tp, end in ends.items()
        }

    @property
    def _pool(self) -> Any:
        return self.context.resources.pool

    async def local_totals(self) -> counters.Counters:
        assignment = self.context.app.consumer.assignment()
        return owned_totals(
            assignment, stats_of(self.context.stats), topic=topics.REQUESTED, now_s=_now_s()
        )

    async def cluster_totals(self) -> counters.Counters:
        await self.context.resources.applier()
        stored = await postgres.counters(self._pool, self.context.settings.app_id)
        return counters.combine(stored.values(), now_s=_now_s())

    async def stats(self) -> tuple[counters.Counters, dict[str, Any]]:
        """The cluster's counter totals and the public ``stats`` answer made from them."""
        totals = await self.cluster_totals()
        summary = counters.summary(totals, now_s=_now_s())
        summary["mirror_pending"] = await postgres.pending_mirror_count(self._pool)
        summary["control"] = self.control()
        summary["revalidation"] = await self.revalidation()
        summary["tables"] = {
            size.table: {"bytes": size.total_bytes, "rows_estimate": size.rows_estimate}
            for size in await self.table_sizes()
        }
        return totals, summary

    async def progress(self) -> dict[str, Any]:
        await self.context.resources.applier()
        counts = await postgres.progress_counts(self._pool)
        summary = counters.summary(await self.cluster_totals(), now_s=_now_s())
        answer = progress_answer(counts, summary)
        answer["control"] = self.control()
        answer["runs"] = await self.latest_runs()
        try:
            by_partition = await self.backlog()
            answer["backlog"] = sum(by_partition.values())
            answer["backlog_by_partition"] = {str(p): n for p, n in sorted(by_partition.items())}
        except Exception as exc:  # noqa: BLE001 - Kafka away: progress still answers
            answer["backlog"] = None
            answer["backlog_error"] = str(exc) or type(exc).__name__
        return answer

    async def worker_metrics(self) -> WorkerMetrics:
        """What this worker exports on /metrics: its own partitions, the cluster's gauges.

        PostgreSQL away, the scrape still answers with what needs no query: the dependencies
        (``postgres`` 0, exactly when it matters), the owned partitions' counters as this
        worker's batches last committed them (its stats table), lag, backlog, control and the
        process. The cluster's gauges, runs and audit findings are left out (absent, not 0).
        """
        owned = owned_partitions(self.context)
        _, checks = await self.health()
        try:
            backlog = {p: n for p, n in (await self.backlog()).items() if p in owned}
        except Exception:  # noqa: BLE001 - Kafka away: the other figures still answer
            backlog = {}
        mine = stats_of(self.context.stats)
        partitions: dict[int, Any] = {p: mine.get(str(p), {}) for p in owned}
        cluster: dict[str, float | int | None] = {}
        runs: list[dict[str, Any]] = []
        audit_open: dict[str, dict[int, int]] = {}
        tables: list[postgres.TableSize] = []
        if checks["postgres"]["ok"]:
            try:
                await self.context.resources.applier()
                stored = await postgres.counters(self._pool, self.context.settings.app_id)
                partitions = {p: stored.get(p, {}) for p in owned}
                counts = await postgres.progress_counts(self._pool)
                cluster = {
                    "legacy_users": counts.legacy_total,
                    "legacy_migrated": counts.migrated,
                    "legacy_failed_for_good": counts.failed_for_good,
                    "legacy_remaining": counts.remaining,
                    "redis_mirror_pending": checks.get("redis_mirror", {}).get("pending"),
                }
                runs = await self.latest_runs()
                audit_open = await self._audit_counts()
                tables = await self.table_sizes()
            except postgres.FAILED:
                checks["postgres"] = {"ok": False}  # went away between the check and now
        return WorkerMetrics(
            worker=self.worker_name(),
            partitions=partitions,
            lag=owned_lag(self.context),
            backlog=backlog,
            cluster=cluster,
            dependencies={name: checks[name]["ok"] for name in ("postgres", "redis", "kafka")},
            process=process_metrics(),
            control=self.control(),
            revalidation=self.context.revalidator.tally.as_dict(),
            runs=runs,
            audit_open=audit_open,
            audit_worker=vars(self.context.auditor.tally),
            tables={t.table: (t.total_bytes, t.rows_estimate) for t in tables},
            pruning=vars(self.context.pruner.tally),
            run_events=self.run_events(),
        )

    def run_events(self) -> dict[str, Any]:
        """This worker's part in run events: whether it leads (publishes them), how many it
        published, and its hooks by how they ended; empty with run events off."""
        publisher, hooks = self.context.run_events, self.context.hooks
        if publisher is None:
            return {}
        return {
            "leading": publisher.leading,
            "published": publisher.published,
            "hooks": dict(hooks.ran) if hooks is not None else {},
        }

    async def _audit_counts(self) -> dict[str, dict[int, int]]:
        """Open findings by kind and partition, every partition of the topic present."""
        found = await answer_store.open_counts(self._pool, self.context.settings.app_id)
        every = range(self.context.settings.topic_partitions)
        return {kind: {p: found.get(kind, {}).get(p, 0) for p in every} for kind in KINDS}

    async def workers(self) -> list[dict[str, Any]]:
        """Every worker that reported lately, with its partitions and lag."""
        await self.context.resources.applier()
        me = self.worker_name()
        rows = await postgres.worker_statuses(
            self._pool, self.context.settings.app_id, within_s=WORKER_GONE_S
        )
        return [
            {
                "worker": row["worker"],
                "this": row["worker"] == me,
                "partitions": list(row["partitions"]),
                "lag": {str(p): int(n) for p, n in row["lag"].items()},
                "lag_total": sum(int(n) for n in row["lag"].values()),
                "in_flight": int(row["in_flight"]),
                "rss_bytes": row["rss_bytes"],
                "started_at": row["started_at"].isoformat(),
                "report_age_s": round(float(row["age_s"]), 1),
                "paused": bool(row["paused"]),
            }
            for row in rows
        ]

    def control(self) -> dict[str, Any]:
        """What the control topic says, and how this worker applies it."""
        watcher = self.context.control
        budget = self.context.settings.budget
        return {
            **watcher.current.as_dict(),
            "worker_paused": watcher.current.paused and watcher.ready.is_set(),
            "worker_rate_per_s": watcher.worker_rate(),
            "auto_pauses": watcher.auto_pauses,
            "failure_budget": budget.describe() if budget is not None else None,
            "failure_budget_used": (
                round(watcher.windows.used(), 4) if watcher.windows is not None else None
            ),
        }

    async def revalidation(self) -> dict[str, Any]:
        """Every live worker's sampler findings, summed."""
        await self.context.resources.applier()
        rows = await postgres.worker_statuses(
            self._pool, self.context.settings.app_id, within_s=WORKER_GONE_S
        )
        me = self.worker_name()
        reports = [
            row["revalidation"] for row in rows if row["revalidation"] and row["worker"] != me
        ]
        reports.append(self.context.revalidator.tally.as_dict())  # this worker's, fresh
        return {**combine(reports), "rate_per_s": self.context.settings.revalidate_per_s}

    async def runs(
        self, *, limit: int = 50, run_ids: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        await self.context.resources.applier()
        found = await run_summaries(
            self._pool,
            now=datetime.now(UTC),
            run_ids=run_ids,
            limit=limit,
            cancels=self.context.control.current.cancels,
        )
        control = self.context.control.current
        return [
            {
                **run.as_dict(),
                "state": shown_state(run.state, paused=control.paused, auto=control.auto),
            }
            for run in found
        ]

    async def latest_runs(self) -> list[dict[str, Any]]:
        """The latest runs for the polled answers (progress, /metrics): computed at most every
        ``RUNS_EVERY_S``, since a run's figures group its audit rows (an index scan as long as
        the run) and the dashboard polls every second. ``GET runs`` is always fresh."""
        now = time.monotonic()
        if self._runs_cache is None or now - self._runs_cache[0] >= RUNS_EVERY_S:
            self._runs_cache = (now, await self.runs(limit=20))
        return self._runs_cache[1]

    async def table_sizes(self) -> list[postgres.TableSize]:
        """Each table's size, at most ``TABLES_EVERY_S`` old."""
        now = time.monotonic()
        if self._tables_cache is None or now - self._tables_cache[0] >= TABLES_EVERY_S:
            self._tables_cache = (now, await postgres.table_sizes(self._pool))
        return self._tables_cache[1]

    async def run_report(self, run_id: str) -> list[dict[str, Any]] | None:
        await self.context.resources.applier()
        return await run_failures(self._pool, run_id)

    async def failures(self, *, sample: int = 5) -> list[dict[str, Any]]:
        """Per error code: users, whether a retry may cure it, the latest few user ids."""
        await self.context.resources.applier()
        rows = await postgres.failure_samples(self._pool, sample=sample)
        return [
            {
                "code": row["error_code"],
                "retryable": is_retryable(ErrorCode(row["error_code"])),
                "users": int(row["users"]),
                "sample_user_ids": list(row["sample"]),
            }
            for row in rows
            if row["error_code"] in ErrorCode.__members__.values()
        ]

    def history(self) -> dict[str, Any]:
        """``GET history``: the chart's past and the control changes, kept by this worker."""
        started = process_metrics().get("process_start_time_seconds", time.time())
        return {
            "every_s": HISTORY_EVERY_S,
            "since": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
            "points": self.context.history.points(),
            "control_changes": list(self.context.control.changes),
        }

    def identity(self) -> dict[str, Any]:
        """Which worker answers: a caller can tell its own worker from another on the port."""
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "app_id": self.context.settings.app_id,
            # "uvloop" or "asyncio": the loop this worker really runs (MIGRATOR_EVENT_LOOP)
            "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            # streams.worker.settle_garbage_collector: what the worker froze once it had started
            "gc_frozen_objects": gc.get_freeze_count(),
        }

    async def health(self) -> tuple[bool, dict[str, Any]]:
        ok, checks = await health_checks(self.context)
        self._outages.note(checks, datetime.now(UTC))
        return ok, checks

    async def answer_audit(self) -> dict[str, Any]:
        """``GET audit``: the open findings, each partition's audit position, this worker's
        rounds."""
        await self.context.resources.applier()
        app_id = self.context.settings.app_id
        found = await answer_store.open_findings(self._pool, app_id)
        now = datetime.now(UTC)
        positions = await answer_store.positions(self._pool, app_id)
        tally = self.context.auditor.tally
        return {
            "ok": not found,
            "every_s": self.context.settings.audit_every_s,
            "open": {kind: sum(1 for f in found if f["kind"] == kind) for kind in KINDS},
            "findings": [
                {
                    "partition": int(f["partition"]),
                    "offset": int(f["request_offset"]),
                    "kind": f["kind"],
                    "extra_answers": int(f["extra_answers"]),
                    "request_id": f["request_id"],
                    "user_id": f["user_id"],
                    "found_at": f["found_at"].isoformat(),
                    "found_by": f["found_by"],
                }
                for f in found
            ],
            "partitions": [
                {
                    "partition": int(p["partition"]),
                    "audited_to": int(p["audited_to"]),
                    "age_s": round((now - p["updated_at"]).total_seconds(), 1),
                }
                for p in positions
            ],
            "worker": {
                "rounds": tally.rounds,
                "records": tally.records,
                "answers": tally.answers,
                "errors": tally.errors,
                "last_error": tally.last_error,
                "last_round_at": tally.last_round_at.isoformat() if tally.last_round_at else None,
            },
        }

    async def validate(self, user_id: str) -> ValidationReport:
        await self.context.resources.applier()
        return await validate_user(self._pool, self.context.resources.redis, user_id)
