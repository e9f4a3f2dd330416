"""What several on-server tests share."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from agents.jobs.schema import apply_schema
from streams.connections import connect
from streams.settings import Settings


@pytest.fixture
async def own_database(stack_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A database of its own, with the schema: for tests that set plan traps (analyze a table
    while it is nearly empty, turn autovacuum off), which would change the plans of every other
    test's statements in the session's database."""
    admin = await connect(stack_settings)
    name = f"test_plan_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = stack_settings.database_url.rpartition("/")
    conn = await connect(stack_settings.model_copy(update={"database_url": f"{base}/{name}"}))
    try:
        await apply_schema(conn)
        yield conn
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
