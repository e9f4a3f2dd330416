"""Run events in PostgreSQL: the outbox of ``user-migration-runs`` and each event's hook state.

An event is recorded (once: its id comes from its cause) before it is published, marked when
Kafka committed it, and its hook is claimed before it starts: a claim is never made twice, so a
hook never runs twice for one event, across workers and restarts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

import sql
from agents.core import run_events
from agents.stores.postgres import Conn
from schemas.run_events import RunEvent


@dataclass(frozen=True)
class Position:
    since: datetime  # run events on since: runs that started or finished before make none
    control_offset: int  # the next control record to turn into an event


async def start(
    conn: Conn | asyncpg.Pool, app_id: str, *, now: datetime, control_end: int
) -> Position:
    """The position of ``app_id``; the first time, now and the control topic's end."""
    row = await conn.fetchrow(sql.query("run_events_start"), app_id, now, control_end)
    assert row is not None
    return Position(row["since"], int(row["control_offset"]))


async def known(conn: Conn | asyncpg.Pool, app_id: str) -> set[str]:
    """Ids of the started and finished events recorded so far."""
    return {row["event_id"] for row in await conn.fetch(sql.query("run_events_known"), app_id)}


async def record(
    conn: Conn,
    app_id: str,
    events: Sequence[RunEvent],
    *,
    now: datetime,
    hooks: bool,
    control_offset: int | None = None,
) -> None:
    """Record ``events`` (those already recorded are left as they are) and, in the same
    transaction, the control topic's next offset: an event is derived once."""
    async with conn.transaction():
        await conn.executemany(
            sql.query("run_events_insert"),
            [
                (
                    app_id,
                    event.event_id,
                    event.event,
                    event.model_dump(mode="json"),
                    event.at,
                    now,
                    "pending" if hooks else None,
                )
                for event in events
            ],
        )
        if control_offset is not None:
            await conn.execute(sql.query("run_events_advance"), app_id, control_offset)


async def record_verified(
    conn: Conn | asyncpg.Pool,
    app_id: str,
    *,
    run_id: str,
    verification_id: str,
    at: datetime,
    by: str | None,
    report: Mapping[str, Any],
) -> RunEvent:
    """For ``migrator verify --run RUN``, once it has ended: record the run's ``verified``
    event (``report``: what it found, as JSON-able data). The worker that publishes run events
    publishes it within seconds, and runs its ``on-run-verified`` hook where hooks are on.
    Recording the same verification twice records it once."""
    event = run_events.verified(run_id, verification_id, at=at, by=by, report=report)
    await conn.execute(
        sql.query("run_events_insert"),
        app_id,
        event.event_id,
        event.event,
        event.model_dump(mode="json"),
        event.at,
        event.at,
        "pending",
    )
    return event


async def unpublished(conn: Conn | asyncpg.Pool, app_id: str, limit: int = 500) -> list[RunEvent]:
    rows = await conn.fetch(sql.query("run_events_unpublished"), app_id, limit)
    return [RunEvent.model_validate(_json(row["event"])) for row in rows]


async def mark_published(
    conn: Conn | asyncpg.Pool, app_id: str, event_ids: Sequence[str], *, now: datetime
) -> None:
    await conn.execute(sql.query("run_events_mark_published"), app_id, list(event_ids), now)


async def recent_runs(conn: Conn | asyncpg.Pool, limit: int = 50) -> dict[str, int]:
    """The latest runs and their request counts (cheap: no answer is counted)."""
    rows = await conn.fetch(sql.query("run_events_recent_runs"), limit)
    return {row["run_id"]: int(row["requested"]) for row in rows}


async def hooks_due(conn: Conn | asyncpg.Pool, app_id: str, limit: int = 20) -> list[str]:
    return [
        row["event_id"]
        for row in await conn.fetch(sql.query("run_events_hooks_due"), app_id, limit)
    ]


async def claim_hook(
    conn: Conn | asyncpg.Pool, app_id: str, event_id: str, *, now: datetime, worker: str
) -> RunEvent | None:
    """Claim the event's hook; None if it was claimed before (by anyone, ever)."""
    value = await conn.fetchval(
        sql.query("run_events_hook_claim"), app_id, event_id, now, f"claimed by {worker}"
    )
    return None if value is None else RunEvent.model_validate(_json(value))


async def hook_done(
    conn: Conn | asyncpg.Pool,
    app_id: str,
    event_id: str,
    *,
    state: str,
    detail: str,
    now: datetime,
) -> None:
    await conn.execute(sql.query("run_events_hook_done"), app_id, event_id, state, detail, now)


async def hooks_interrupted(
    conn: Conn | asyncpg.Pool, app_id: str, *, claimed_before: datetime, now: datetime
) -> list[tuple[str, str]]:
    """Hooks claimed before ``claimed_before`` that never ended: marked interrupted (not run
    again); their (event id, kind)."""
    rows = await conn.fetch(sql.query("run_events_hooks_interrupted"), app_id, claimed_before, now)
    return [(row["event_id"], row["kind"]) for row in rows]


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str | bytes) else value
