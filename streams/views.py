"""HTTP on the Faust web server (contract §9): stats, progress, health, validate, admin, dashboard.

``stats`` is the same on every worker: the counters live in PostgreSQL, advanced in each batch's
own transaction, and every worker reads all partitions' totals from there. ``?scope=local`` gives
the totals of the request partitions this worker owns, from its ``stats`` table.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any, cast

import aiohttp.web
import asyncpg
from faust.web import Request, Response, View

import sql
from agents import counters, pg_store, redis_store
from agents.validation import validate_user
from schemas.events import ErrorCode, is_retryable
from streams import topics
from streams.http_input import (
    MAX_BODY_BYTES,
    InputError,
    RequestOptions,
    authorize,
    check_user_id,
    parse_bulk,
    parse_options,
)
from streams.metrics import prometheus_text
from streams.requests_out import encode, new_request

if TYPE_CHECKING:
    from streams.context import ServiceContext

PREFIX = "/api/v1/onboarding/migration"
# Failure codes a retry cannot cure: such users count as done for progress and its ETA.
FOR_GOOD_CODES = [code.value for code in ErrorCode if not is_retryable(code)]
_POSTGRES_ERRORS: tuple[type[BaseException], ...] = (*pg_store.UNAVAILABLE, asyncpg.PostgresError)


def register_views(migrator: ServiceContext) -> None:
    app = migrator.app

    async def local_totals() -> dict[str, Any]:
        owned = {
            str(tp.partition) for tp in app.consumer.assignment() if tp.topic == topics.REQUESTED
        }
        parts = [dict(migrator.stats.data[key]) for key in owned if key in migrator.stats.data]
        return counters.combine(parts, now_s=int(time.time()))

    async def cluster_totals() -> dict[str, Any]:
        await migrator.ready_core()
        stored = await pg_store.counters(migrator.resources.pool, migrator.settings.app_id)
        return counters.combine(stored.values(), now_s=int(time.time()))

    async def mirror_pending() -> int:
        return await pg_store.pending_mirror_count(migrator.resources.pool)

    async def stats_now() -> tuple[dict[str, Any], dict[str, Any]]:
        """The cluster's counter totals and the public ``stats`` answer made from them."""
        totals = await cluster_totals()
        summary = counters.summary(totals, now_s=int(time.time()))
        summary["mirror_pending"] = await mirror_pending()
        return totals, summary

    async def progress() -> dict[str, Any]:
        """How much of the legacy population is done: migrated, or failed for a reason only
        fixing the data cures (those are listed apart and not waited for)."""
        await migrator.ready_core()
        pool = migrator.resources.pool
        row = await pool.fetchrow(sql.query("progress"), FOR_GOOD_CODES)
        summary = counters.summary(await cluster_totals(), now_s=int(time.time()))
        total, migrated = int(row["legacy_total"]), int(row["migrated"])
        failed_for_good = int(row["failed_for_good"])
        remaining = max(0, total - migrated - failed_for_good)
        rate = summary["rate_per_s"]
        return {
            "legacy_total": total,
            "migrated": migrated,
            "failed_for_good": failed_for_good,
            "remaining": remaining,
            "percent": round(100 * (total - remaining) / total, 2) if total else 100.0,
            "rate_per_s": rate,
            "eta_s": 0.0 if remaining == 0 else (round(remaining / rate, 1) if rate > 0 else None),
            "stats": summary,
        }

    async def health() -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        pool = migrator.resources.pool
        try:
            if pool is None:
                raise RuntimeError("not started")
            await asyncio.wait_for(pool.fetchval("SELECT 1"), timeout=3)
            checks["postgres"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - any failure is "down" for a health check
            checks["postgres"] = {"ok": False, "error": str(exc) or type(exc).__name__}
        try:
            if migrator.resources.redis is None:
                raise RuntimeError("not started")
            await asyncio.wait_for(redis_store.ping(migrator.resources.redis), timeout=3)
            checks["redis"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = {"ok": False, "error": str(exc) or type(exc).__name__}
        checks["kafka"] = await _kafka_health(migrator)
        core = migrator.resources.core
        waiting = core.waiting_for if core is not None else "not started"
        checks["processing"] = (
            {"ok": True} if waiting is None else {"ok": False, "error": f"waiting for {waiting}"}
        )
        if checks["postgres"]["ok"]:
            # Not a failure: Redis is repaired from PostgreSQL by the worker itself.
            checks["redis_mirror"] = {"ok": True, "pending": await mirror_pending()}
        return all(c["ok"] for c in checks.values()), checks

    async def publish_requests(
        user_ids: list[str], action: str, options: RequestOptions
    ) -> list[str]:
        now = datetime.now(UTC)
        producer = app.producer
        await producer.maybe_start()
        request_ids = []
        futures = []
        for user_id in user_ids:
            request = new_request(
                user_id,
                action=action,
                dry_run=options.dry_run,
                requested_by=options.requested_by,
                reason=options.reason,
                now=now,
            )
            key, value = encode(request)
            futures.append(await producer.send(topics.REQUESTED, key, value, None, None, None))
            request_ids.append(str(request.request_id))
        for future in futures:
            await future
        return request_ids

    async def all_unmigrated() -> list[str]:
        await migrator.ready_core()
        return await pg_store.unmigrated_user_ids(migrator.resources.pool)

    class Admin(View):
        """Base of the mutating endpoints: bearer token first, then the body."""

        action = "migrate"

        async def _handle(self, request: Request, user_id: str | None) -> Response:
            try:
                authorize(migrator.settings.admin_token_value, request.headers.get("Authorization"))
                http = cast(aiohttp.web.Request, request)
                if (http.content_length or 0) > MAX_BODY_BYTES:
                    raise InputError(413, f"body is larger than {MAX_BODY_BYTES} bytes")
                raw = await http.content.read(MAX_BODY_BYTES + 1)
                if user_id is not None:
                    user_ids, options = [check_user_id(user_id)], parse_options(raw)
                else:
                    bulk = parse_bulk(raw, allow_all=self.action == "migrate")
                    options = bulk.options
                    user_ids = (
                        bulk.user_ids if bulk.user_ids is not None else await all_unmigrated()
                    )
            except InputError as error:
                return _error(self, error)
            ids = await publish_requests(user_ids, self.action, options)
            return self.json(
                {"action": self.action, "dry_run": options.dry_run, "count": len(ids),
                 "request_ids": ids},
                status=202,
            )  # fmt: skip

    @app.page(f"{PREFIX}/migrate")
    class MigrateMany(Admin):
        async def post(self, request: Request) -> Response:
            return await self._handle(request, None)

    @app.page(f"{PREFIX}/migrate/{{user_id}}")
    class MigrateOne(Admin):
        async def post(self, request: Request, user_id: str) -> Response:
            return await self._handle(request, user_id)

    @app.page(f"{PREFIX}/rollback")
    class RollbackMany(Admin):
        action = "rollback"

        async def post(self, request: Request) -> Response:
            return await self._handle(request, None)

    @app.page(f"{PREFIX}/rollback/{{user_id}}")
    class RollbackOne(Admin):
        action = "rollback"

        async def post(self, request: Request, user_id: str) -> Response:
            return await self._handle(request, user_id)

    @app.page(f"{PREFIX}/stats")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            if request.query.get("scope") == "local":
                return self.json({"totals": await local_totals()})
            try:
                _, summary = await stats_now()
            except _POSTGRES_ERRORS as exc:
                return self.json({"error": f"PostgreSQL did not answer: {exc}"}, status=503)
            return self.json(summary)

    @app.page(f"{PREFIX}/progress")
    class Progress(View):
        async def get(self, request: Request) -> Response:
            try:
                return self.json(await progress())
            except _POSTGRES_ERRORS as exc:
                return self.json({"error": f"PostgreSQL did not answer: {exc}"}, status=503)

    @app.page(f"{PREFIX}/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            ok, checks = await health()
            return self.json({"ok": ok, "checks": checks}, status=200 if ok else 503)

    @app.page(f"{PREFIX}/validate/{{user_id}}")
    class Validate(View):
        async def get(self, request: Request, user_id: str) -> Response:
            try:
                check_user_id(user_id)
            except InputError as error:
                return _error(self, error)
            await migrator.ready_core()
            report = await validate_user(migrator.resources.pool, migrator.resources.redis, user_id)
            return self.json(report.as_dict())

    @app.page("/dashboard")
    class Dashboard(View):
        async def get(self, request: Request) -> Response:
            return self.html(_dashboard_html())

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            try:
                totals, summary = await stats_now()
            except _POSTGRES_ERRORS as exc:
                # A failed scrape is what Prometheus expects when the numbers are not there.
                return self.text(f"PostgreSQL did not answer: {exc}\n", status=503)
            return self.text(
                prometheus_text(summary, totals),
                content_type="text/plain; version=0.0.4",
            )


def _error(view: View, error: InputError) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="migrator"'} if error.status == 401 else None
    return view.json({"error": error.message}, status=error.status, headers=headers)


def _dashboard_html() -> str:
    return resources.files("streams").joinpath("dashboard.html").read_text("utf-8")


async def _kafka_health(migrator: ServiceContext) -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    client = AIOKafkaAdminClient(
        bootstrap_servers=migrator.settings.kafka_bootstrap_servers, request_timeout_ms=3000
    )
    try:
        await asyncio.wait_for(client.start(), timeout=4)
        cluster = await asyncio.wait_for(client.describe_cluster(), timeout=4)
        return {"ok": bool(cluster.get("brokers")), "brokers": len(cluster.get("brokers", []))}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": str(exc) or type(exc).__name__}
    finally:
        try:
            await client.close()
        except Exception:  # noqa: BLE001
            pass
