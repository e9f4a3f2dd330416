"""Fixtures shared by every test directory: the real servers of the local stack.

A test that cannot reach a server fails with a message saying which and why, on CI and on a
developer's machine alike: a skipped integration test reads as green and hides a broken stack.
Every test is marked by its folder: ``unit`` (tests/core, tests/agents, tests/streams: no
servers, seconds; ``make test-fast``), ``integration`` and ``e2e``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from agents.jobs.schema import apply_schema
from streams.connections import connect, create_pool, create_redis
from streams.settings import Settings

_NEEDED = ("KAFKA_BROKER_URL", "DATABASE_URL", "REDIS_URL")
_TESTS = Path(__file__).parent
_MARK_BY_FOLDER = {
    "core": pytest.mark.unit,
    "agents": pytest.mark.unit,
    "streams": pytest.mark.unit,
    "integration": pytest.mark.integration,
    "e2e": pytest.mark.e2e,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.relative_to(_TESTS).parts[0]
        item.add_marker(_MARK_BY_FOLDER[folder])


def _unavailable(message: str) -> None:
    pytest.fail(f"{message} (integration tests never skip)", pytrace=False)


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    missing = [name for name in _NEEDED if not os.environ.get(name)]
    if missing:
        _unavailable(
            f"{', '.join(missing)} not set: run `make test`, or "
            'eval "$(migrator stack up)" before pytest'
        )
    return Settings.from_env()


@pytest.fixture(scope="session")
async def settings(stack_settings: Settings) -> AsyncIterator[Settings]:
    """Settings pointing at a fresh database, made for this test session and dropped after it."""
    try:
        admin = await connect(stack_settings)
    except Exception as exc:
        _unavailable(f"PostgreSQL at DATABASE_URL does not answer: {exc}")
        raise
    name = f"test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = stack_settings.database_url.rpartition("/")
    session_settings = stack_settings.model_copy(update={"database_url": f"{base}/{name}"})
    conn = await connect(session_settings)
    try:
        await apply_schema(conn)
    finally:
        await conn.close()
    yield session_settings
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(settings, max_size=10)
    yield created
    await created.close()


@pytest.fixture(scope="session")
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = create_redis(settings)
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"Redis at REDIS_URL does not answer: {exc}")
    yield client
    await client.aclose()


@pytest.fixture
def unique() -> Iterator[str]:
    """A short random suffix for names (topics, users, app ids) that tests must not share."""
    yield uuid.uuid4().hex[:10]
