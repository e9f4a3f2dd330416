"""``migrator verify --repair``: what a verification found, put right where a repair is safe.

The plan sorts the users by what they need: a session, steps or manifest that differ from the
snapshot's plan are rebuilt from the snapshot (then mirrored); a mirror that differs is rewritten
from PostgreSQL; drift (the legacy row changed after its snapshot or rollback) and what cannot be
rebuilt (a snapshot that no longer hashes to its hash, a session gone) are left to an operator.

``execute`` works a page of users at a time, each page in one transaction that first locks the
users' legacy rows (the lock a batch holds while it writes the same users) and checks the users
again under that lock: a user a worker changed meanwhile, or that is right now, is not touched.
Every rebuild writes an audit entry (action ``repair``) naming the checks that failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agents.core.planner import PlanError, plan_migration
from agents.core.verify_rules import Finding, session_findings
from agents.jobs.resync import rewrite_users
from agents.jobs.verify import judge
from agents.stores import postgres, redis_mirror, verification
from agents.stores.postgres import Pool
from agents.stores.redis_mirror import Client
from schemas.legacy import LegacyRow

PAGE = 200


@dataclass(frozen=True)
class RepairPlan:
    rebuild: list[str]  # from the snapshot, then mirrored
    rewrite: list[str]  # the mirror only, from PostgreSQL
    drift: list[str]  # an operator decides
    unrepairable: list[str]  # an operator decides

    @property
    def empty(self) -> bool:
        return not (self.rebuild or self.rewrite)


@dataclass
class RepairResult:
    rebuilt: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    already_right: list[str] = field(default_factory=list)  # right when checked under the lock
    refused: list[str] = field(default_factory=list)  # found drift or worse under the lock


def plan_repair(findings: Sequence[Finding]) -> RepairPlan:
    """Pure. A user with drift or an unrepairable finding is not rebuilt (an operator decides),
    but its mirror is still rewritten from PostgreSQL, the truth either way; a rebuilt user's
    mirror is rewritten by the rebuild."""
    kinds: dict[str, set[str]] = {}
    for finding in findings:
        kinds.setdefault(finding.user_id, set()).add(finding.kind)
    rebuild, rewrite, drift, unrepairable = [], [], [], []
    for user, found in sorted(kinds.items()):
        if "unrepairable" in found:
            unrepairable.append(user)
        elif "drift" in found:
            drift.append(user)
        elif "postgres" in found:
            rebuild.append(user)
        if "redis" in found and (rebuild[-1:] != [user]):
            rewrite.append(user)
    return RepairPlan(rebuild, rewrite, drift, unrepairable)


async def execute(
    pool: Pool, client: Client, plan: RepairPlan, *, verify_id: int | None
) -> RepairResult:
    result = RepairResult()
    for start in range(0, len(plan.rebuild), PAGE):
        await _rebuild_page(pool, client, plan.rebuild[start : start + PAGE], verify_id, result)
    for start in range(0, len(plan.rewrite), PAGE):
        await _rewrite_page(pool, client, plan.rewrite[start : start + PAGE], result)
    return result


async def _rebuild_page(
    pool: Pool, client: Client, users: list[str], verify_id: int | None, result: RepairResult
) -> None:
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        await postgres.lock_legacy_users(conn, users)
        rows = {row["user_id"]: row for row in await verification.chunk(conn, users)}
        found = {
            user: session_findings(rows[user]) if rows[user]["session_id"] else [] for user in users
        }
        snapshots = await verification.snapshots(conn, users)
        rebuilt: list[str] = []
        for user in users:
            kinds = {f.kind for f in found[user]}
            if rows[user]["session_id"] is None or kinds & {"drift", "unrepairable"}:
                result.refused.append(user)
                continue
            if "postgres" not in kinds:
                result.already_right.append(user)
                continue
            snapshot = snapshots[user]
            try:
                plan = plan_migration(
                    LegacyRow.from_snapshot(snapshot["legacy_snapshot"]),
                    session_id=snapshot["session_id"],
                    now=now,
                )
            except (PlanError, ValueError):
                result.refused.append(user)
                continue
            detail = {
                "verify_id": verify_id,
                "checks": sorted({f.check for f in found[user] if f.kind == "postgres"}),
                "rebuilt_from": "legacy_snapshot",
                "legacy_sha256": snapshot["legacy_sha256"],
            }
            await verification.rebuild_from_plan(conn, plan, detail=detail, now=now)
            rebuilt.append(user)
        await rewrite_users(conn, client, rebuilt)
    result.rebuilt += rebuilt


async def _rewrite_page(pool: Pool, client: Client, users: list[str], result: RepairResult) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await postgres.lock_legacy_users(conn, users)
        rows = await verification.chunk(conn, users)
        await rewrite_users(conn, client, users)
        # A rolled-back user's old session document, which no pointer leads to any more.
        leftovers = [
            redis_mirror.session_key(row["old_session_id"])
            for row in rows
            if row["session_id"] is None and row["old_session_id"]
        ]
        await redis_mirror.delete_keys(client, leftovers)
        # What is still wrong with the mirror under the lock (nothing, unless Redis refused).
        still = {f.user_id for f in await judge(conn, client, rows) if f.kind == "redis"}
    result.rewritten += [user for user in users if user not in still]
