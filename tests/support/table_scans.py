"""Reading what a connection's statements did to a table, for tests of query plans."""

from __future__ import annotations

import asyncpg


async def table_scans(conn: asyncpg.Connection, table: str) -> tuple[int, int]:
    """Sequential and index scans of ``table`` this connection made and has not yet reported.

    PostgreSQL 15 and later keep earlier transactions' counts here until they are flushed, so a
    test compares two readings taken in one transaction."""
    row = await conn.fetchrow(
        "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname = $1", table
    )
    assert row is not None
    return row["seq_scan"], row["idx_scan"]
