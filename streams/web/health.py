"""``GET health``: each dependency and the worker's own state, checked now.

PostgreSQL, Redis and Kafka answer or not; processing is not waiting for a dependency; a pause
is said (not a failure: the operator or the failure budget asked for it); the Redis mirror's
pending users are counted (repaired by the worker itself); the answer audit's open findings
degrade the worker without making it unhealthy (no restart cures them).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agents.core.answer_audit import KINDS
from agents.stores import answer_audit as answer_store
from agents.stores import postgres, redis_mirror

if TYPE_CHECKING:
    from streams.context import ServiceContext

CHECK_TIMEOUT_S = 3
# Checks whose failure degrades the worker without making it unhealthy (health stays 200): the
# answer audit's findings are the cluster's, and no restart cures them.
DEGRADING = frozenset({"answers"})
# Open findings health names (GET audit lists up to 1,000).
HEALTH_FINDINGS = 50


async def health_checks(context: ServiceContext) -> tuple[bool, dict[str, Any]]:
    """Whether this worker is healthy (``GET health``: 200 or 503), and each check's answer."""
    resources = context.resources
    checks: dict[str, Any] = {
        "postgres": await _check(lambda: postgres.ping(_started(resources.pool))),
        "redis": await _check(lambda: redis_mirror.ping(_started(resources.redis))),
        "kafka": await _kafka_health(context.settings.kafka_bootstrap_servers),
    }
    applier = resources.batch_applier
    waiting = applier.waiting_for if applier is not None else "not started"
    if not checks["kafka"]["ok"]:
        # The worker neither fetches requests nor publishes answers: not processing, whatever
        # the batch applier (which waits only for PostgreSQL) says.
        waiting = "Kafka: no request is fetched and no answer published until it is back"
    checks["processing"] = (
        {"ok": True} if waiting is None else {"ok": False, "error": f"waiting for {waiting}"}
    )
    control = context.control.current
    if control.paused:
        # Not a failure either: the operator (or the failure budget) asked for it.
        checks["control"] = {
            "ok": True,
            "paused": True,
            "reason": control.reason,
            "by": control.by,
        }
    if checks["postgres"]["ok"]:
        # Not a failure: Redis is repaired from PostgreSQL by the worker itself.
        pending = await postgres.pending_mirror_count(context.resources.pool)
        checks["redis_mirror"] = {"ok": True, "pending": pending}
        checks["answers"] = await _answers_check(context)
    return all(c["ok"] for name, c in checks.items() if name not in DEGRADING), checks


async def _answers_check(context: ServiceContext) -> dict[str, Any]:
    """The answer audit's open findings, by kind and partition (a few offsets each)."""
    found = await answer_store.open_findings(
        context.resources.pool, context.settings.app_id, limit=HEALTH_FINDINGS
    )
    check: dict[str, Any] = {"ok": not found}
    for kind in KINDS:
        by_partition: dict[str, list[int]] = {}
        for row in found:
            if row["kind"] == kind:
                by_partition.setdefault(str(row["partition"]), []).append(
                    int(row["request_offset"])
                )
        if by_partition:
            check[kind] = by_partition
    if found:
        check["error"] = (
            "request records without exactly one answer: run `migrator audit`, then "
            "`migrator replay --unanswered`"
        )
    return check


class Outages:
    """Since when each check has been failing, as this worker saw it: a view can say "down
    since 13:42:05" instead of only "down". Kept per worker (one per app's views)."""

    def __init__(self) -> None:
        self._since: dict[str, str] = {}

    def note(self, checks: dict[str, Any], now: datetime) -> None:
        """Add ``since`` (ISO time, first seen failing) to each failing check; forget the rest."""
        for name, check in checks.items():
            if check.get("ok"):
                self._since.pop(name, None)
            else:
                check["since"] = self._since.setdefault(name, now.isoformat(timespec="seconds"))


def _started(resource: Any) -> Any:
    if resource is None:
        raise RuntimeError("not started")
    return resource


async def _check(probe: Any) -> dict[str, Any]:
    try:
        await asyncio.wait_for(probe(), timeout=CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure is "down" for a health check
        return {"ok": False, "error": str(exc) or type(exc).__name__}
    return {"ok": True}


async def _kafka_health(bootstrap_servers: list[str]) -> dict[str, Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    client = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=CHECK_TIMEOUT_S * 1000
    )
    try:
        await asyncio.wait_for(client.start(), timeout=CHECK_TIMEOUT_S + 1)
        cluster = await asyncio.wait_for(client.describe_cluster(), timeout=CHECK_TIMEOUT_S + 1)
        return {"ok": bool(cluster.get("brokers")), "brokers": len(cluster.get("brokers", []))}
    except Exception as exc:  # noqa: BLE001 - any failure is "down" for a health check
        # aiokafka's own text is a repr of the socket address; say where and what instead.
        where = ", ".join(bootstrap_servers)
        return {"ok": False, "error": f"not answering at {where} ({type(exc).__name__})"}
    finally:
        try:
            await client.close()
        except Exception:  # noqa: BLE001 - closing a client that never started
            pass
