"""Runs in PostgreSQL: what each enqueue published into a run, and what the audit log answered.

The run's counts are never kept as counters: they are the audit log's rows, grouped, so they
hold exactly what PostgreSQL committed and cannot drift from it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

import sql
from agents.core.cohorts import AnswerCount, RunSummary, rate_window_start, summarize
from agents.core.control_state import RunCancel
from agents.stores import verification
from agents.stores.postgres import Conn


async def record_run(
    conn: Conn | asyncpg.Pool,
    run_id: str,
    *,
    action: str,
    count: int,
    created_by: str,
    selection: Mapping[str, Any],
    now: datetime,
) -> None:
    """Add ``count`` published requests of ``action`` to the run (created if new)."""
    await conn.execute(
        sql.query("record_run"),
        run_id,
        now,
        created_by,
        dict(selection),
        action,
        count,
    )


async def run_summaries(
    conn: Conn | asyncpg.Pool,
    *,
    now: datetime,
    run_ids: Sequence[str] | None = None,
    limit: int = 50,
    cancels: Mapping[str, RunCancel] | None = None,
) -> list[RunSummary]:
    """The runs (given ones, or the ``limit`` latest), each with its figures; ``cancels`` (the
    control topic's) says which were cancelled."""
    runs = await conn.fetch(sql.query("runs"), None if run_ids is None else list(run_ids), limit)
    if not runs:
        return []
    grouped: dict[str, list[AnswerCount]] = defaultdict(list)
    for row in await conn.fetch(
        sql.query("run_answers"), [r["run_id"] for r in runs], rate_window_start(now)
    ):
        grouped[row["run_id"]].append(
            AnswerCount(
                action=row["action"],
                outcome=row["outcome"],
                error_code=row["error_code"],
                count=int(row["count"]),
                recent=int(row["recent"]),
                first_at=row["first_at"],
                last_at=row["last_at"],
            )
        )
    cancelled = cancels or {}
    verified = await verification.last_for_runs(conn, [r["run_id"] for r in runs])
    return [
        replace(
            summarize(
                dict(run), grouped[run["run_id"]], now=now, cancel=cancelled.get(run["run_id"])
            ),
            verified=verified.get(run["run_id"]),
        )
        for run in runs
    ]


async def run_known(conn: Conn | asyncpg.Pool, run_id: str) -> bool:
    """Whether the run was recorded (without computing its figures)."""
    return bool(await conn.fetchval(sql.query("run_known"), run_id))


async def run_failures(conn: Conn | asyncpg.Pool, run_id: str) -> list[dict[str, Any]] | None:
    """A run's report: each user whose latest answer in the run is a failure; None for a run
    never recorded (an unknown name is an error, not an empty report)."""
    if not await run_known(conn, run_id):
        return None
    rows = await conn.fetch(sql.query("run_failures"), run_id)
    return [
        {
            "user_id": row["user_id"],
            "action": row["action"],
            "error_code": row["error_code"],
            "retryable": row["retryable"],
            "message": row["message"],
            "request_id": str(row["request_id"]),
            "at": row["created_at"].isoformat(),
        }
        for row in rows
        if row["outcome"] == "failed"
    ]


async def run_sessions(conn: Conn | asyncpg.Pool, run_id: str) -> list[str] | None:
    """Users holding now a session that a migrate request of the run created; None for a run
    never recorded."""
    if not await run_known(conn, run_id):
        return None
    return [row["user_id"] for row in await conn.fetch(sql.query("run_sessions"), run_id)]
