"""``migrator verify``: every user of a scope checked against its legacy snapshot and the mirror.

Users go in user_id order, in keyset chunks. For each chunk PostgreSQL compares and hashes
(``verify_chunk.sql``: one compact row per user), Redis hashes the chunk's documents in a few
script calls (one round trip: pointers and SHA-1s), and the pure rules
(``agents.core.verify_rules``) name what differs. A hash PostgreSQL finds different is
recomputed in Python before it is reported, so a value the SQL canonical form does not cover
can slow verify down but never make it wrong. A few chunks are in flight at once (PostgreSQL
works on some, on both cores, while Python judges another); each chunk's findings and the new
position are committed in order, so ``--resume`` goes on after the last chunk saved.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from agents.core.catalog import STEPS
from agents.core.documents import document_from_row
from agents.core.planner import PlanError, plan_migration
from agents.core.verify_rules import (
    Finding,
    Tally,
    planned_session,
    redis_findings,
    session_findings,
    sessionless_findings,
)
from agents.stores import postgres, redis_mirror, verification
from agents.stores.postgres import Pool, Record
from agents.stores.redis_mirror import Client
from schemas.canonical import sha256_hex
from schemas.legacy import LegacyRow

CHUNK = 5_000
IN_FLIGHT = 2


@dataclass(frozen=True)
class Scope:
    """Which users: ``population`` (everyone), ``run`` (the users a run touched) or ``ids``."""

    kind: str
    run_id: str | None = None
    ids: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "run":
            return {"kind": "run", "run_id": self.run_id}
        if self.kind == "ids":
            return {"kind": "ids", "ids": list(self.ids)}
        return {"kind": "population"}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Scope:
        return cls(value["kind"], value.get("run_id"), tuple(value.get("ids", ())))

    def describe(self) -> str:
        if self.kind == "run":
            return f"run {self.run_id}"
        if self.kind == "ids":
            return f"{len(self.ids)} given user(s)"
        return "the whole population"


@dataclass
class Verification:
    verify_id: int
    scope: Scope
    started_at: datetime
    tally: Tally
    elapsed_s: float
    resumed_from: str | None = None
    findings: list[Finding] = field(default_factory=list)
    checked_now: int = 0  # users checked by this process (a resume adds to earlier ones)
    seconds_now: float = 0.0

    @property
    def ok(self) -> bool:
        return self.tally.mismatched == 0

    @property
    def rate(self) -> float:
        return self.checked_now / self.seconds_now if self.seconds_now else 0.0


async def total_of(pool: Pool, scope: Scope) -> int:
    if scope.kind == "population":
        return await verification.population_count(pool)
    return len(await _listed(pool, scope))


async def _listed(pool: Pool, scope: Scope) -> list[str]:
    if scope.kind == "run":
        assert scope.run_id is not None
        return await verification.run_users(pool, scope.run_id)
    return sorted(set(scope.ids))


async def _pages(pool: Pool, scope: Scope, after: str, size: int) -> AsyncIterator[list[str]]:
    """The scope's users after ``after``, in user_id order, ``size`` at a time."""
    if scope.kind == "population":
        while True:
            page = await verification.users_page(pool, after, size)
            if not page:
                return
            yield page
            after = page[-1]
    users = [user for user in await _listed(pool, scope) if user > after]
    for start in range(0, len(users), size):
        yield users[start : start + size]


async def start(pool: Pool, scope: Scope) -> Verification:
    now = datetime.now(UTC)
    verify_id = await verification.start(pool, scope=scope.as_dict(), run_id=scope.run_id, now=now)
    return Verification(verify_id, scope, now, Tally(), 0.0)


async def resume(pool: Pool) -> Verification | None:
    """The latest verification that did not finish, ready to go on; None if there is none."""
    found = await verification.unfinished(pool)
    if found is None:
        return None
    tally = Tally(found.checked, found.mismatched)
    assert tally.by_check is not None
    tally.by_check.update(found.by_check)
    return Verification(
        found.verify_id,
        Scope.from_dict(found.scope),
        found.started_at,
        tally,
        found.elapsed_s,
        resumed_from=found.position,
    )


async def run(
    pool: Pool,
    client: Client,
    job: Verification,
    *,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
) -> Verification:
    """Check the scope's users after the job's position; save after every chunk; finish."""
    position = job.resumed_from or ""
    began = time.monotonic()
    pending: list[asyncio.Task[list[Finding]]] = []
    pages: list[list[str]] = []

    async def settle() -> None:
        users = pages.pop(0)
        found = await pending.pop(0)
        job.tally.add(len(users), found)
        job.findings += found
        job.checked_now += len(users)
        assert job.tally.by_check is not None
        await verification.save_chunk(
            pool,
            job.verify_id,
            position=users[-1],
            checked=job.tally.checked,
            mismatched=job.tally.mismatched,
            by_check=dict(job.tally.by_check),
            elapsed_s=job.elapsed_s + time.monotonic() - began,
            findings=found,
            now=datetime.now(UTC),
        )
        if progress is not None:
            progress(job.tally.checked)

    try:
        async for page in _pages(pool, job.scope, position, chunk):
            pages.append(page)
            pending.append(asyncio.create_task(check_users(pool, client, page)))
            if len(pending) >= IN_FLIGHT:
                await settle()
        while pending:
            await settle()
    finally:
        for task in pending:
            task.cancel()
    job.seconds_now = time.monotonic() - began
    job.elapsed_s += job.seconds_now
    await verification.finish(pool, job.verify_id, datetime.now(UTC))
    if job.resumed_from is not None:  # the report holds what the chunks before the stop found
        job.findings = await verification.findings(pool, job.verify_id)
    return job


async def check_users(pool: Pool, client: Client, users: Sequence[str]) -> list[Finding]:
    """The findings of some users (one chunk): PostgreSQL, then the mirror, then the Python
    recheck of what PostgreSQL's hashes say differs."""
    rows = await verification.chunk(pool, users)
    return await judge(pool, client, rows)


async def judge(
    pool: Pool | postgres.Conn, client: Client, rows: Sequence[Record]
) -> list[Finding]:
    with_session = [row for row in rows if row["session_id"] is not None]
    without = [row for row in rows if row["session_id"] is None]
    old = [row for row in without if row["old_session_id"]]
    pointer_list, hashes = await redis_mirror.digests(
        client,
        [row["user_id"] for row in rows],
        [str(row["session_id"]) for row in with_session] + [row["old_session_id"] for row in old],
    )
    pointers = {row["user_id"]: value for row, value in zip(rows, pointer_list, strict=True)}
    documents = hashes[: len(with_session)]
    old_present = {
        row["user_id"]: value is not None
        for row, value in zip(old, hashes[len(with_session) :], strict=True)
    }
    found: list[Finding] = []
    doubtful: list[Record] = []  # Redis documents to compare with PostgreSQL's own rows
    for row, raw in zip(with_session, documents, strict=True):
        pg = session_findings(row)
        found += pg
        user = row["user_id"]
        session_id = str(row["session_id"])
        if raw is None or pointers[user] != session_id:
            found += redis_findings(
                user,
                session_id,
                pointer=pointers[user],
                document_present=raw is not None,
                document_equal=False,
            )
        elif any(f.check == "steps" for f in pg) or not _same_document(row, raw):
            doubtful.append(row)
    for row in without:
        found += sessionless_findings(
            row,
            pointer=pointers[row["user_id"]],
            old_session_in_redis=old_present.get(row["user_id"], False),
        )
    if doubtful:
        found += await _compare_with_rows(pool, client, doubtful)
    return await _recheck_hashes(pool, found)


@cache
def _steps_json(completed: int, skipped: int) -> bytes:
    """The mirror's ``steps`` of a session with these step masks, encoded (once per pair)."""
    statuses = planned_session(completed, skipped).statuses
    return redis_mirror.encode_document(
        {
            "steps": [
                {
                    "step_number": s.number,
                    "step_key": s.key,
                    "status": st.value,
                    "required": s.required,
                }
                for s, st in zip(STEPS, statuses, strict=True)
            ]
        }
    )[len(b'{"steps":') : -1]


def _document_bytes(row: Record) -> bytes:
    """The bytes the mirror holds for this session if it equals PostgreSQL's compact row (the
    steps from the catalog; ``documents.session_document``'s keys, in its order)."""
    head = document_from_row(row, steps=())
    del head["steps"]
    return redis_mirror.encode_document_with_steps(
        head, _steps_json(row["completed"] or 0, row["skipped"] or 0)
    )


def _same_document(row: Record, digest: str) -> bool:
    """The fast comparison: the SHA-1 of the bytes the mirror would write, against the one
    Redis computed. A document that differs only in how it was serialised is then decoded and
    compared (``_compare_with_rows``) before anything is reported."""
    return hashlib.sha1(_document_bytes(row)).hexdigest() == digest


async def _compare_with_rows(
    pool: Pool | postgres.Conn, client: Client, rows: Sequence[Record]
) -> list[Finding]:
    """Compare the mirror with PostgreSQL's full rows (steps read one by one): for sessions
    whose steps PostgreSQL found wrong, or whose document the fast comparison doubted."""
    full = {
        r["user_id"]: document_from_row(r)
        for r in await postgres.session_documents(pool, [row["user_id"] for row in rows])
    }
    found: list[Finding] = []
    for row in rows:
        user = row["user_id"]
        _, stored = await redis_mirror.read_session(client, user)
        found += redis_findings(
            user,
            str(row["session_id"]),
            pointer=str(row["session_id"]),
            document_present=stored is not None,
            document_equal=stored == full.get(user),
        )
    return found


async def _recheck_hashes(pool: Pool | postgres.Conn, found: list[Finding]) -> list[Finding]:
    """Drop the hash findings Python's canonical JSON does not confirm (see the module doc)."""
    hashed = {"snapshot_hash", "manifest", "manifest_checksum"}
    users = sorted({f.user_id for f in found if f.check in hashed})
    if not users:
        return found
    stored = await verification.snapshots(pool, users)
    cleared: set[tuple[str, str]] = set()
    for user in users:
        row = stored.get(user)
        if row is None:
            continue
        if sha256_hex(row["legacy_snapshot"]) == row["legacy_sha256"]:
            cleared.add((user, "snapshot_hash"))
        if _manifests_as_planned(row):
            cleared.add((user, "manifest"))
            cleared.add((user, "manifest_checksum"))
    return [f for f in found if (f.user_id, f.check) not in cleared]


def _manifests_as_planned(row: Record) -> bool:
    try:
        plan = plan_migration(
            LegacyRow.from_snapshot(row["legacy_snapshot"]),
            session_id=row["session_id"],
            now=row["created_at"],
        )
    except (PlanError, ValueError):
        return False
    manifests = list(row["manifests"])
    if plan.manifest is None:
        return not manifests
    return manifests == [
        {
            "version": 1,
            "manifest": plan.manifest,
            "checksum": plan.manifest_checksum,
            "token_estimate": plan.token_estimate,
        }
    ]
