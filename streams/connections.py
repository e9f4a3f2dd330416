"""Opening the service's connections (PostgreSQL pool, Redis client) from settings.

Connection errors are turned into one-line ``DependencyUnavailable`` errors naming the server
and its address, because the person reading them is usually an operator starting something.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import asyncpg
import redis.asyncio as aioredis
from pydantic_core import to_json

from schemas.rows import JsonText
from streams.settings import Settings


class DependencyUnavailable(RuntimeError):
    """PostgreSQL or Redis could not be reached."""


class KafkaClient(Protocol):
    """What an aiokafka producer, consumer or admin client has in common here."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def start_kafka_client(client: KafkaClient) -> None:
    """Start a Kafka client; one that cannot start is closed before the error goes up (no
    "Unclosed AIOKafkaProducer" warning after the one-line message, no leaked connection)."""
    try:
        await client.start()
    except BaseException:
        await client.stop()
        raise


async def stop_kafka_client(client: KafkaClient) -> None:
    """Stop a Kafka client whatever it was doing.

    aiokafka 0.14's consumer, stopped while a fetch request is in flight (Kafka away), cancels
    that request's task and awaits it, and lets its ``CancelledError`` out
    (``Fetcher.close``). That is not a cancellation of the caller: taken for one, it ended a
    worker's answer audit and settle loops for good after a Kafka outage (mode terminates a
    service task that raises it). It is passed on only when the caller itself is being
    cancelled.
    """
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


def unreachable(server: str, address: str, detail: object = None) -> str:
    """The one line that says a server is not there, and how to start it locally: the stack it
    belongs to (``make demo``'s is under ``.stack/demo``), or a new one."""
    cause = f" ({detail})" if detail is not None else ""
    stack = stack_of(address)
    if stack is not None:
        hint = f"start it again with: migrator stack up --dir {stack}"
    else:
        hint = 'start one with: eval "$(migrator stack up)"'
    return f"{server} at {address} is not reachable{cause}; {hint}"


def stack_of(address: str, root: Path = Path(".stack")) -> Path | None:
    """The local stack directory (``migrator stack up --dir``: ``stack.json`` holds its ports)
    serving ``address``'s port on this machine, if any."""
    found = re.search(r"(?:localhost|127\.0\.0\.1):(\d+)", address)
    if found is None or not root.is_dir():
        return None
    port = int(found.group(1))
    for described in sorted(root.glob("*/stack.json")):
        try:
            ports = json.loads(described.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(ports, dict) and port in ports.values():
            return described.parent
    return None


# An escaped U+0000 in JSON text: ``\u0000`` after an even number of backslashes (an odd number
# means the backslash itself is escaped and the text is the six characters, which is fine).
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def postgres_safe_json(text: bytes) -> bytes:
    """JSON text PostgreSQL's jsonb accepts: it refuses U+0000 anywhere in a string, so a NUL a
    producer put in a free-text field (``reason``) is stored as U+FFFD instead of failing the
    request. The event published to Kafka keeps the original text."""
    if b"\\u0000" not in text:
        return text
    return _NUL_ESCAPE.sub(rb"\1\\ufffd", text)


def _encode_jsonb(value: object) -> bytes:
    # pydantic-core's JSON encoder (Rust) is several times faster than json.dumps here, and
    # jsonb values are written for every migrated user (snapshot, manifest, audit detail).
    text = value if isinstance(value, JsonText) else to_json(value)
    return b"\x01" + postgres_safe_json(text)


def _decode_jsonb(data: bytes) -> object:
    return json.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb as plain Python data, in binary format (version byte 1 + UTF-8 JSON): a text-format
    # codec would make asyncpg refuse jsonb columns in binary COPY, which the hot path relies on.
    await conn.set_type_codec(
        "jsonb",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        schema="pg_catalog",
        format="binary",
    )


async def create_pool(settings: Settings, *, min_size: int = 1, max_size: int = 8) -> asyncpg.Pool:
    try:
        return await asyncpg.create_pool(
            settings.database_url,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            command_timeout=60,
            timeout=10,
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DependencyUnavailable(
            unreachable("PostgreSQL", redact(settings.database_url), exc)
        ) from exc


async def connect(settings: Settings) -> asyncpg.Connection:
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=10)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DependencyUnavailable(
            unreachable("PostgreSQL", redact(settings.database_url), exc)
        ) from exc
    await _init_connection(conn)
    return conn


def create_redis(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
    )


@asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, aioredis.Redis]]:
    """A pool and a Redis client for one command-line run, closed afterwards."""
    pool = await create_pool(settings)
    client = create_redis(settings)
    try:
        yield pool, client
    finally:
        await client.aclose()
        await pool.close()


def redact(url: str) -> str:
    """Hide a password in a URL before it is printed."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
