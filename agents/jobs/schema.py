"""``migrator db init``: apply the numbered DDL files of ``sql/ddl`` once each, and say so.

Every file is applied in its own transaction under an advisory lock (two workers starting at once
must not race), then recorded with its SHA-256 in ``schema_migrations``. A recorded file whose text
changed is an error rather than a silent re-run: DDL that shipped is amended by a new file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import sql
from agents.stores import postgres

_LOCK_KEY = 0x6D69677261746F72  # "migrator"


class SchemaDrift(RuntimeError):
    """An applied DDL file no longer matches what was recorded when it was applied."""


@dataclass(frozen=True)
class SchemaReport:
    applied: list[str]
    already: list[str]


async def apply_schema(
    conn: postgres.Connection, files: Sequence[tuple[int, str, str]] | None = None
) -> SchemaReport:
    """Apply what is not applied yet of ``files`` (``(version, name, text)``; by default the
    shipped ``sql/ddl``); refuse with ``SchemaDrift`` if an applied file's text changed."""
    applied: list[str] = []
    already: list[str] = []
    await postgres.advisory_lock(conn, _LOCK_KEY)
    try:
        await conn.execute(sql.query("schema_migrations_table"))
        rows = await conn.fetch(sql.query("schema_migrations"))
        recorded = {row["version"]: (row["name"], row["sha256"]) for row in rows}
        for version, name, text in sql.ddl_files() if files is None else files:
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            if version in recorded:
                if recorded[version][1] != digest:
                    raise SchemaDrift(
                        f"{name} changed after it was applied; add a new numbered file instead"
                    )
                already.append(name)
                continue
            async with conn.transaction():
                await conn.execute(text)
                await conn.execute(sql.query("record_schema_migration"), version, name, digest)
            applied.append(name)
    finally:
        await postgres.advisory_unlock(conn, _LOCK_KEY)
    return SchemaReport(applied=applied, already=already)
