"""The answer audit in PostgreSQL: each request partition's audit position, and the findings
(statements in ``sql/queries/audit_*.sql``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sql
from agents.core.answer_audit import (
    DUPLICATED,
    KINDS,
    UNANSWERED,
    Finding,
    PartitionLedger,
    ranges_from_json,
    ranges_to_json,
)
from agents.stores.postgres import Conn


@dataclass(frozen=True)
class AuditPosition:
    """Where a partition's audit stands, as stored."""

    ledger: PartitionLedger
    answers_read: dict[str, int]


@dataclass(frozen=True)
class FindingRow:
    finding: Finding
    request_id: str | None = None
    user_id: str | None = None


async def load_position(conn: Conn, app_id: str, partition: int) -> AuditPosition | None:
    row = await conn.fetchrow(
        sql.query("audit_load_position"),
        app_id,
        partition,
    )
    if row is None:
        return None
    ledger = PartitionLedger(
        partition,
        int(row["audited_to"]),
        ranges_from_json(row["answered"]),
        floor=int(row["floor"]),
    )
    reads = {str(k): int(v) for k, v in dict(row["answers_read"]).items()}
    return AuditPosition(ledger, reads)


async def start_position(
    conn: Conn, app_id: str, partition: int, audited_to: int, answers_read: Mapping[str, int]
) -> None:
    """The partition's first audit position (kept if another worker wrote one first)."""
    await conn.execute(
        sql.query("audit_start_position"),
        app_id,
        partition,
        audited_to,
        dict(answers_read),
    )


async def save_round(
    conn: Conn,
    app_id: str,
    *,
    before: AuditPosition,
    after: AuditPosition,
    findings: Sequence[FindingRow],
    repaired: Sequence[tuple[int, int]],
    found_by: str,
    now: datetime,
) -> bool:
    """Store one audit round in one transaction: False (nothing stored) when the position moved
    since ``before`` was read (another worker audited the partition meanwhile)."""
    async with conn.transaction():
        moved = await conn.execute(
            sql.query("audit_save_round"),
            app_id,
            after.ledger.partition,
            after.ledger.audited_to,
            after.answers_read,
            ranges_to_json(after.ledger.answered),
            now,
            before.ledger.audited_to,
            before.answers_read,
        )
        if moved != "UPDATE 1":
            return False
        await record_findings(conn, app_id, findings, found_by=found_by, now=now)
        await close_repaired(conn, app_id, repaired, now=now)
    return True


async def record_findings(
    conn: Conn, app_id: str, findings: Sequence[FindingRow], *, found_by: str, now: datetime
) -> None:
    """Insert findings; a duplicate found again counts one more extra answer."""
    if not findings:
        return
    await conn.executemany(
        sql.query("audit_record_findings"),
        [
            (
                app_id,
                row.finding.partition,
                row.finding.offset,
                row.finding.kind,
                1 if row.finding.kind == DUPLICATED else 0,
                row.request_id,
                row.user_id,
                now,
                found_by,
            )
            for row in findings
        ],
    )


async def close_repaired(
    conn: Conn, app_id: str, repaired: Sequence[tuple[int, int]], *, now: datetime
) -> None:
    """Close the unanswered findings of records whose replay was answered."""
    if not repaired:
        return
    await conn.executemany(
        sql.query("audit_close_repaired"),
        [(app_id, partition, offset, now) for partition, offset in repaired],
    )


async def acknowledge_duplicates(conn: Conn, app_id: str, *, by: str, now: datetime) -> int:
    """Close the open duplicated findings (an operator has looked at them)."""
    done = await conn.execute(
        sql.query("audit_acknowledge_duplicates"),
        app_id,
        now,
        f"acknowledged by {by}",
    )
    return int(done.split()[-1])


async def open_findings(conn: Conn, app_id: str, *, limit: int = 1000) -> list[dict[str, Any]]:
    """The open findings, oldest offsets first."""
    rows = await conn.fetch(
        sql.query("audit_open_findings"),
        app_id,
        limit,
    )
    return [dict(row) for row in rows]


async def unanswered(conn: Conn, app_id: str) -> list[tuple[int, int]]:
    """``(partition, offset)`` of every open unanswered finding."""
    rows = await conn.fetch(
        sql.query("audit_unanswered"),
        app_id,
        UNANSWERED,
    )
    return [(int(r["partition"]), int(r["request_offset"])) for r in rows]


async def positions(conn: Conn, app_id: str) -> list[dict[str, Any]]:
    """Each partition's audited limit and when it last moved."""
    rows = await conn.fetch(
        sql.query("audit_positions"),
        app_id,
    )
    return [dict(row) for row in rows]


async def open_counts(conn: Conn, app_id: str) -> dict[str, dict[int, int]]:
    """Open findings counted by kind, then partition."""
    rows = await conn.fetch(
        sql.query("audit_open_counts"),
        app_id,
    )
    counts: dict[str, dict[int, int]] = {kind: {} for kind in KINDS}
    for row in rows:
        counts[row["kind"]][int(row["partition"])] = int(row["n"])
    return counts
