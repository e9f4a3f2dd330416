"""The idle cost of a worker for ``make bench``: what it spends per second with nothing to do.

Why measure it apart: a worker spends most of its life idle, and its idle polling of Kafka,
PostgreSQL and Redis is a cost that per-user figures of a flood never show. Everything is taken
from outside the worker, over a quiet window after the flood has drained (nothing published, the
bench's own Kafka clients closed):

- worker CPU: its process tree in /proc, in ms per second;
- PostgreSQL transactions: ``pg_stat_database`` commits + rollbacks of the service's database,
  read over a connection to the ``postgres`` database so the reading itself is not counted. A
  backend reports its counts at most once a second, an idle one within 10 s, so each end of the
  window is blurred by up to that; transactions of autovacuum in that database count too;
- PostgreSQL statements: ``log_statement = all`` is switched on (ALTER SYSTEM and a reload) for the
  window only, and the statements the server logged between two offsets of its log are counted.
  A backend applies the reload before its next command, so a pooled connection idle since the
  switch has its first statement missed. (The stack preloads ``pg_stat_statements`` too, but it
  counts the statements of every client, the bench's own readings among them, and it is the
  flood's profile; the log names the idle window's statements alone.)
- Redis commands: ``INFO commandstats`` calls, the bench's own ``INFO`` left out;
- Kafka requests: the broker's request logger (``kafka.request.logger``) is switched to DEBUG for
  the window through Kafka's dynamic broker-logger config (its own ``ConfigCommand``), and the
  requests completed on the client listener between two offsets of the broker log are counted,
  by API. The controller listener (the broker's own heartbeats and metadata) is left out.

The switches are undone afterwards even when the measurement fails. With logging on, the
servers' own CPU in the window is a little above what it would be; it is reported as context.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

CLIENT_LISTENER = "PLAINTEXT"
# The default log_line_prefix ('%m [%p] '), then what log_statement writes: ``statement: …`` for
# the simple protocol, ``execute <name>: …`` for a prepared statement (asyncpg).
_PG_STATEMENT = re.compile(r"\] LOG:  (?:statement|execute [^:]*):")


class IdleCostError(Exception):
    """Why the idle cost could not be measured, as one line."""


@dataclass(frozen=True)
class Window:
    """The quiet window: ``settle_s`` after the switches, then ``seconds`` measured."""

    settle_s: float
    seconds: float


# --- pure parts --------------------------------------------------------------------------------


def kafka_requests(lines: Iterable[str]) -> Counter[tuple[str, str]]:
    """Requests completed on the client listener, counted by (API name, client id)."""
    from streams.stack.kafka import completed_requests

    counts: Counter[tuple[str, str]] = Counter()
    for record in completed_requests(lines):
        try:
            header = record["requestHeader"]
            api, client = str(header["requestApiKeyName"]), str(header.get("clientId"))
        except (KeyError, TypeError):
            continue
        if record.get("listener") == CLIENT_LISTENER:
            counts[(api, client)] += 1
    return counts


def pg_statements(lines: Iterable[str]) -> int:
    """Statements PostgreSQL logged with ``log_statement = all`` (continuation lines ignored)."""
    return sum(1 for line in lines if _PG_STATEMENT.search(line))


def redis_calls(commandstats: dict[str, Any]) -> int:
    """Commands Redis served, from ``INFO commandstats``, the bench's own ``INFO`` left out."""
    return sum(
        int(stats["calls"])
        for name, stats in commandstats.items()
        if name.startswith("cmdstat_") and name != "cmdstat_info"
    )


def summarize(
    *,
    window_s: float,
    worker_cpu_s: float,
    servers_cpu_s: dict[str, float],
    pg_transactions: int,
    pg_statement_count: int,
    redis_commands: int,
    kafka: Counter[tuple[str, str]],
    settle_s: float,
) -> dict[str, Any]:
    """The JSON of the idle cost: everything per second of the window."""
    by_api: Counter[str] = Counter()
    by_client: Counter[str] = Counter()
    for (api, client), n in kafka.items():
        by_api[api] += n
        by_client[client] += n

    def per_s(value: float) -> float:
        return round(value / window_s, 2)

    return {
        "window_s": round(window_s, 2),
        "settle_s": settle_s,
        "worker_cpu_ms_per_s": round(worker_cpu_s * 1000 / window_s, 2),
        "postgres_transactions_per_s": per_s(pg_transactions),
        "postgres_statements_per_s": per_s(pg_statement_count),
        "redis_commands_per_s": per_s(redis_commands),
        "kafka_requests_per_s": per_s(sum(kafka.values())),
        "kafka_requests_per_s_by_api": {api: per_s(n) for api, n in by_api.most_common()},
        "kafka_requests_by_client": dict(by_client.most_common()),
        "servers_cpu_ms_per_s": {
            name: round(seconds * 1000 / window_s, 2) for name, seconds in servers_cpu_s.items()
        },
        "counts": {
            "postgres_transactions": pg_transactions,
            "postgres_statements": pg_statement_count,
            "redis_commands": redis_commands,
            "kafka_requests": sum(kafka.values()),
        },
    }


def lines(idle: dict[str, Any]) -> list[str]:
    """The table's idle-cost section."""
    apis = ", ".join(
        f"{api} {rate:g}" for api, rate in list(idle["kafka_requests_per_s_by_api"].items())[:4]
    )
    servers = ", ".join(f"{name} {ms:.1f}" for name, ms in idle["servers_cpu_ms_per_s"].items())
    return [
        f"idle cost: the drained worker over {idle['window_s']:.0f} s with nothing published "
        f"(from {idle['settle_s']:g} s after switching the servers' request logs on)",
        f"  idle: worker CPU {idle['worker_cpu_ms_per_s']:.1f} ms/s, PostgreSQL "
        f"{idle['postgres_transactions_per_s']:g} tx/s and "
        f"{idle['postgres_statements_per_s']:g} statements/s, Redis "
        f"{idle['redis_commands_per_s']:g} commands/s, Kafka "
        f"{idle['kafka_requests_per_s']:g} requests/s" + (f" ({apis})" if apis else ""),
        f"{'':8}servers' CPU meanwhile (their request/statement logging on), ms/s: {servers}",
    ]


# --- switching the servers' logging ------------------------------------------------------------


def _admin_dsn(database_url: str) -> str:
    """The service's PostgreSQL URL pointed at the ``postgres`` database."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path="/postgres"))


def _kafka_request_log(bootstrap: str, level: str) -> None:
    from streams.stack.errors import StackError
    from streams.stack.kafka import set_request_log

    try:
        set_request_log(bootstrap, level)
    except StackError as exc:
        raise IdleCostError(str(exc)) from None


async def _pg_log_statements(conn: Any, on: bool) -> None:
    if on:
        await conn.execute("ALTER SYSTEM SET log_statement = 'all'")
    else:
        await conn.execute("ALTER SYSTEM RESET log_statement")
    await conn.execute("SELECT pg_reload_conf()")


async def _pg_transactions(conn: Any, database: str) -> int:
    value = await conn.fetchval(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", database
    )
    if value is None:
        raise IdleCostError(f"pg_stat_database has no row for the database {database!r}")
    return int(value)


def _read_between(path: Path, start: int, end: int) -> list[str]:
    with path.open("rb") as handle:
        handle.seek(start)
        return handle.read(max(0, end - start)).decode(errors="replace").splitlines()


# --- the measurement ---------------------------------------------------------------------------


async def measure(
    *,
    env: dict[str, str],
    stack_dir: Path,
    bootstrap: str,
    worker_pid: int,
    servers: dict[str, int],
    cpu_seconds: Callable[[int], float],
    window: Window,
    worker_alive: Callable[[], None],
) -> dict[str, Any]:
    """One quiet window on a drained worker; ``worker_alive`` raises if the worker has exited.

    One PostgreSQL connection (to the ``postgres`` database) and one Redis connection serve both
    ends of the window, so their own connection set-up falls outside it.
    """
    import asyncpg
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    database_url = env["DATABASE_URL"]
    database = urlsplit(database_url).path.lstrip("/") or "migrator"
    kafka_log, pg_log = stack_dir / "kafka.log", stack_dir / "postgres.log"
    processes = {"worker": worker_pid, **servers}
    try:
        pg = await asyncpg.connect(_admin_dsn(database_url), timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise IdleCostError(f"PostgreSQL: {exc}") from None
    redis = aioredis.from_url(env["REDIS_URL"])
    kafka_switched = pg_switched = False
    try:
        await _pg_log_statements(pg, on=True)
        pg_switched = True
        await asyncio.to_thread(_kafka_request_log, bootstrap, "DEBUG")
        kafka_switched = True
        await asyncio.sleep(window.settle_s)
        worker_alive()
        tx_before = await _pg_transactions(pg, database)
        redis_before = redis_calls(await redis.info("commandstats"))
        offsets = {path: path.stat().st_size for path in (kafka_log, pg_log)}
        cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
        started = time.monotonic()
        await asyncio.sleep(window.seconds)
        elapsed = time.monotonic() - started
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in processes.items()}
        ends = {path: path.stat().st_size for path in (kafka_log, pg_log)}
        redis_after = redis_calls(await redis.info("commandstats"))
        tx_after = await _pg_transactions(pg, database)
        worker_alive()
        kafka = kafka_requests(_read_between(kafka_log, offsets[kafka_log], ends[kafka_log]))
        statements = pg_statements(_read_between(pg_log, offsets[pg_log], ends[pg_log]))
    except (OSError, asyncpg.PostgresError, RedisError) as exc:
        raise IdleCostError(f"{type(exc).__name__}: {exc}") from None
    finally:
        try:
            if kafka_switched:
                await asyncio.to_thread(_kafka_request_log, bootstrap, "WARN")
            if pg_switched:
                await _pg_log_statements(pg, on=False)
        finally:
            await redis.aclose()
            await pg.close()
    worker_cpu = cpu.pop("worker")
    return summarize(
        window_s=elapsed,
        worker_cpu_s=worker_cpu,
        servers_cpu_s=cpu,
        pg_transactions=tx_after - tx_before,
        pg_statement_count=statements,
        redis_commands=redis_after - redis_before,
        kafka=kafka,
        settle_s=window.settle_s,
    )
