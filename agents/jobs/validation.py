"""``migrator validate USER_ID`` and the web API's validate: load one user, run the checks."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from agents.core.checks import Check, check_session
from agents.core.documents import document_from_row
from agents.stores import postgres, redis_mirror
from schemas.legacy import LegacyRow


@dataclass(frozen=True)
class ValidationReport:
    user_id: str
    migrated: bool
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return self.migrated and all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "migrated": self.migrated,
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


async def validate_user(
    pool: asyncpg.Pool, client: aioredis.Redis, user_id: str
) -> ValidationReport:
    rows = await postgres.validation_rows(pool, user_id)
    pointer, redis_doc = await redis_mirror.read_session(client, user_id)
    postgres_doc = document_from_row(rows.session) if rows.session is not None else None
    detail = rows.snapshot
    snapshot = detail["legacy_snapshot"] if detail else None
    actual = LegacyRow.from_snapshot(snapshot).snapshot_sha256() if snapshot else None
    checks = check_session(
        postgres_doc=postgres_doc,
        redis_doc=redis_doc,
        redis_pointer=pointer,
        manifests=detail["manifests"] if detail else [],
        snapshot=snapshot,
        snapshot_sha256_recorded=detail["legacy_sha256"] if detail else None,
        snapshot_sha256_actual=actual,
        legacy_status=rows.legacy.status if rows.legacy is not None else None,
    )
    return ValidationReport(user_id=user_id, migrated=postgres_doc is not None, checks=checks)
