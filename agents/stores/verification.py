"""PostgreSQL for ``migrator verify``: the chunk query, the population's pages, the verification's
own state (position, figures, findings), and the statements of a repair.

The chunk query does the comparing and hashing server-side (``sql/queries/verify_chunk.sql``);
the state lives in the tables of DDL 014 so that a stopped verification resumes where it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sql
from agents.core.catalog import STEPS
from agents.core.planner import MigrationPlan
from agents.core.rows import StepsRow
from agents.core.verify_rules import Finding
from agents.stores.postgres import Conn, Pool, Record, steps_arguments

_KEYS = [step.key for step in STEPS]
_REQUIRED = [step.required for step in STEPS]


async def chunk(conn: Conn | Pool, user_ids: Sequence[str]) -> list[Record]:
    """One row per given user (``verify_chunk.sql``), in no particular order."""
    return list(await conn.fetch(sql.query("verify_chunk"), list(user_ids), _KEYS, _REQUIRED))


async def users_page(conn: Conn | Pool, after: str, limit: int) -> list[str]:
    rows = await conn.fetch(sql.query("verify_users_page"), after, limit)
    return [row["user_id"] for row in rows]


async def population_count(conn: Conn | Pool) -> int:
    return int(await conn.fetchval(sql.query("verify_population_count")))


async def run_users(conn: Conn | Pool, run_id: str) -> list[str]:
    return [row["user_id"] for row in await conn.fetch(sql.query("verify_run_users"), run_id)]


async def snapshots(conn: Conn | Pool, user_ids: Sequence[str]) -> dict[str, Record]:
    """Snapshot, recorded hash and manifests of these users' sessions, by user."""
    if not user_ids:
        return {}
    rows = await conn.fetch(sql.query("verify_snapshots"), list(user_ids))
    return {row["user_id"]: row for row in rows}


class Resumable(NamedTuple):
    verify_id: int
    scope: dict[str, Any]
    run_id: str | None
    started_at: datetime
    position: str
    checked: int
    mismatched: int
    by_check: dict[str, int]
    elapsed_s: float


async def start(
    conn: Conn | Pool, *, scope: Mapping[str, Any], run_id: str | None, now: datetime
) -> int:
    return int(await conn.fetchval(sql.query("verify_start"), dict(scope), run_id, now))


async def unfinished(conn: Conn | Pool) -> Resumable | None:
    row = await conn.fetchrow(sql.query("verify_unfinished"))
    if row is None:
        return None
    return Resumable(
        int(row["verify_id"]),
        dict(row["scope"]),
        row["run_id"],
        row["started_at"],
        row["position"],
        int(row["checked"]),
        int(row["mismatched"]),
        {k: int(v) for k, v in row["by_check"].items()},
        float(row["elapsed_s"]),
    )


async def save_chunk(
    pool: Pool,
    verify_id: int,
    *,
    position: str,
    checked: int,
    mismatched: int,
    by_check: Mapping[str, int],
    elapsed_s: float,
    findings: Sequence[Finding],
    now: datetime,
) -> None:
    """A chunk's findings and the verification's new position, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        if findings:
            await conn.execute(
                sql.query("verify_record_findings"),
                verify_id,
                [f.user_id for f in findings],
                [f.check for f in findings],
                [f.kind for f in findings],
                [f.detail for f in findings],
            )
        await conn.execute(
            sql.query("verify_save_chunk"),
            verify_id,
            position,
            checked,
            mismatched,
            dict(by_check),
            elapsed_s,
            now,
        )


async def finish(conn: Conn | Pool, verify_id: int, now: datetime) -> None:
    await conn.execute(sql.query("verify_finish"), verify_id, now)


async def findings(conn: Conn | Pool, verify_id: int) -> list[Finding]:
    rows = await conn.fetch(sql.query("verify_findings"), verify_id)
    return [Finding(r["user_id"], r["check_name"], r["kind"], r["detail"]) for r in rows]


async def last_for_runs(conn: Conn | Pool, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each run's latest finished verification: when, its result, its figures."""
    if not run_ids:
        return {}
    rows = await conn.fetch(sql.query("verify_last_for_runs"), list(run_ids))
    return {
        row["run_id"]: {
            "verify_id": int(row["verify_id"]),
            "at": row["finished_at"].isoformat(),
            "ok": bool(row["ok"]),
            "checked": int(row["checked"]),
            "mismatched": int(row["mismatched"]),
            "by_check": dict(row["by_check"]),
        }
        for row in rows
    }


async def rebuild_from_plan(
    conn: Conn, plan: MigrationPlan, *, detail: Mapping[str, Any], now: datetime
) -> None:
    """Write a session, its steps and its manifest as ``plan`` (made from the session's own
    snapshot) says, and an audit entry; the caller holds the user's legacy row lock."""
    await conn.execute(
        sql.query("verify_repair_session"),
        plan.session_id,
        plan.workspace_id,
        plan.status,
        plan.current_step,
        plan.completion_percentage,
        plan.steps_completed,
        now,
    )
    await conn.execute(sql.query("verify_repair_forget_steps"), plan.session_id)
    await conn.execute(
        sql.query("insert_steps"),
        *steps_arguments([StepsRow(plan.session_id, plan.step_codes, plan.completed_at)]),
    )
    if plan.manifest is not None:
        await conn.execute(
            sql.query("verify_repair_manifest"),
            plan.session_id,
            plan.user_id,
            plan.manifest,
            plan.manifest_checksum,
            plan.token_estimate,
            now,
        )
    await conn.execute(
        sql.query("verify_repair_audit"), uuid.uuid4(), plan.user_id, dict(detail), now
    )
