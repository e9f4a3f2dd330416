"""In-memory stores for the batch applier (``agents.stores.protocol``), for millisecond tests.

They keep the rows the real stores keep and behave as the servers do where the applier relies
on it: a transaction's writes vanish if it raises, a second answer for one record position is a
unique violation, a store that is down refuses. They raise the stores' own errors
(``agents.stores.errors``), as the real adapters do after translating their client's, and import
no client library. Faults are injected per statement (``refuse``), so retry, halving and mirror
repair can be driven exactly. The shared scenarios of ``tests/agents/test_batch_applier.py`` run
on these and on the real servers alike.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from agents.core.catalog import STEPS
from agents.core.rows import AuditRow, LedgerRow, ManifestRow, ProcessedRow, SessionRow, StepsRow
from agents.core.state import LedgerEntry, StoredSession
from agents.stores.errors import (
    AnsweredElsewhere,
    MirrorUnavailable,
    StatementRefused,
    StoreUnavailable,
)
from schemas.events import FOR_GOOD_CODES
from schemas.legacy import LegacyRow, UnreadableLegacyRow

_STATUS = {"c": "completed", "s": "skipped", "p": "pending"}

# Decides, from a statement's name and arguments, whether it fails and with what.
Refusal = Callable[[str, Mapping[str, Any]], BaseException | None]


@dataclass
class Tables:
    """What PostgreSQL holds, table by table."""

    legacy: dict[str, LegacyRow] = field(default_factory=dict)
    sessions: dict[str, SessionRow] = field(default_factory=dict)  # by user id
    steps: dict[UUID, StepsRow] = field(default_factory=dict)
    manifests: dict[UUID, list[ManifestRow]] = field(default_factory=dict)
    ledger: dict[UUID, LedgerRow] = field(default_factory=dict)
    audit: list[AuditRow] = field(default_factory=list)
    processed: dict[tuple[str, int, int], ProcessedRow] = field(default_factory=dict)
    counters: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    mirror_pending: set[str] = field(default_factory=set)


class FakePostgres:
    """``BatchStore``: ``up`` False makes every call fail as a connection refused."""

    def __init__(self) -> None:
        self.tables = Tables()
        self.up = True
        self.refusals: list[Refusal] = []
        self.commits = 0
        self.rollbacks = 0
        self.statements: list[str] = []

    def refuse(self, refusal: Refusal) -> None:
        self.refusals.append(refusal)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeTransaction]:
        self._answer_or_raise()
        before = copy.deepcopy(self.tables)
        try:
            yield FakeTransaction(self)
        except BaseException:
            self.tables = before
            self.rollbacks += 1
            raise
        self._answer_or_raise()  # the COMMIT needs the server too
        self.commits += 1

    async def ping(self) -> None:
        self._answer_or_raise()

    def run(self, statement: str, **arguments: Any) -> None:
        self._answer_or_raise()
        self.statements.append(statement)
        for refusal in self.refusals:
            error = refusal(statement, arguments)
            if error is not None:
                raise error

    def _answer_or_raise(self) -> None:
        if not self.up:
            raise StoreUnavailable(
                "ConnectionRefusedError: Connect call failed (fake PostgreSQL is down)"
            )


class FakeTransaction:
    """``BatchTransaction`` over the fake's tables."""

    def __init__(self, server: FakePostgres) -> None:
        self._server = server

    @property
    def _t(self) -> Tables:
        return self._server.tables

    async def processed_records(
        self, app_id: str, positions: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], tuple[bytes, bytes | None]]:
        self._server.run("processed_records", positions=positions)
        found = {}
        for partition, offset in positions:
            row = self._t.processed.get((app_id, partition, offset))
            if row is not None:
                found[(partition, offset)] = (row.record_digest, row.outcome)
        return found

    async def forget_processed_records(
        self, app_id: str, positions: Sequence[tuple[int, int]]
    ) -> None:
        self._server.run("forget_processed_records", positions=positions)
        for partition, offset in positions:
            self._t.processed.pop((app_id, partition, offset), None)

    async def insert_processed_records(self, rows: Sequence[ProcessedRow]) -> None:
        self._server.run("insert_processed_records", rows=rows)
        for row in rows:
            key = (row.app_id, row.source_partition, row.source_offset)
            if key in self._t.processed:
                raise AnsweredElsewhere(f"duplicate processed record {key}")
            self._t.processed[key] = row

    async def lock_legacy_rows(
        self, user_ids: Sequence[str]
    ) -> dict[str, LegacyRow | UnreadableLegacyRow]:
        self._server.run("lock_legacy_rows", user_ids=user_ids)
        return {u: self._t.legacy[u] for u in sorted(user_ids) if u in self._t.legacy}

    async def lock_sessions(self, user_ids: Sequence[str]) -> dict[str, StoredSession]:
        self._server.run("lock_sessions", user_ids=user_ids)
        found = {}
        for user in sorted(user_ids):
            row = self._t.sessions.get(user)
            if row is None:
                continue
            newest = max(
                self._t.manifests.get(row.session_id, []), key=lambda m: m.version, default=None
            )
            found[user] = StoredSession(
                session_id=row.session_id,
                user_id=row.user_id,
                workspace_id=row.workspace_id,
                status=row.status,
                current_step=row.current_step,
                completion_percentage=row.completion_percentage,
                steps_completed=row.steps_completed,
                legacy_snapshot=_json(row.legacy_snapshot)
                if isinstance(row.legacy_snapshot, bytes)
                else row.legacy_snapshot,
                legacy_sha256=row.legacy_sha256,
                bcm_version=newest.version if newest else None,
                bcm_checksum=newest.checksum if newest else None,
                bcm_token_estimate=newest.token_estimate if newest else None,
            )
        return found

    async def ledger_entries(self, request_ids: Sequence[UUID]) -> dict[UUID, LedgerEntry]:
        self._server.run("ledger_entries", request_ids=request_ids)
        return {
            r: LedgerEntry(
                request_id=row.request_id,
                user_id=row.user_id,
                action=row.action,
                outcome=bytes(row.outcome),
                source_partition=row.source_partition,
                source_offset=row.source_offset,
            )
            for r in request_ids
            if (row := self._t.ledger.get(r)) is not None
        }

    async def insert_sessions(
        self,
        sessions: Sequence[SessionRow],
        steps: Sequence[StepsRow],
        manifests: Sequence[ManifestRow],
    ) -> None:
        self._server.run("insert_sessions", sessions=sessions, steps=steps, manifests=manifests)
        for session in sessions:
            if session.user_id in self._t.sessions:
                raise AnsweredElsewhere(f"user {session.user_id} has a session")
            self._t.sessions[session.user_id] = session
        known = {s.session_id for s in self._t.sessions.values()}
        for row in steps:
            if row.session_id not in known:
                raise StatementRefused(f"no session {row.session_id}")
            self._t.steps[row.session_id] = row
        for manifest in manifests:
            self._t.manifests.setdefault(manifest.session_id, []).append(manifest)

    async def mark_legacy_migrated(self, user_ids: Sequence[str], now: datetime) -> None:
        self._server.run("mark_legacy_migrated", user_ids=user_ids)
        for user in user_ids:
            if user in self._t.legacy:
                row = self._t.legacy[user]
                self._t.legacy[user] = row.model_copy(
                    update={"status": "migrated", "updated_at": now}
                )

    async def delete_sessions(self, session_ids: Sequence[UUID]) -> None:
        self._server.run("delete_sessions", session_ids=session_ids)
        gone = set(session_ids)
        for user, row in list(self._t.sessions.items()):
            if row.session_id in gone:
                del self._t.sessions[user]
                self._t.steps.pop(row.session_id, None)
                self._t.manifests.pop(row.session_id, None)

    async def restore_legacy_rows(
        self, snapshots: Sequence[Mapping[str, Any]]
    ) -> dict[str, LegacyRow]:
        self._server.run("restore_legacy_rows", snapshots=snapshots)
        restored = {}
        for snapshot in snapshots:
            row = LegacyRow.from_snapshot(dict(snapshot))
            self._t.legacy[row.user_id] = restored[row.user_id] = row
        return restored

    async def insert_ledger(self, rows: Sequence[LedgerRow]) -> None:
        self._server.run("insert_ledger", rows=rows)
        for row in rows:
            if row.request_id in self._t.ledger:
                raise AnsweredElsewhere(f"request {row.request_id} in the ledger")
            self._t.ledger[row.request_id] = row

    async def insert_audit(self, rows: Sequence[AuditRow]) -> None:
        self._server.run("insert_audit", rows=rows)
        self._t.audit.extend(rows)

    async def known_failures(self, user_ids: Sequence[str]) -> set[str]:
        self._server.run("known_failures", user_ids=user_ids)
        wanted = set(user_ids)
        return {
            row.user_id
            for row in self._t.audit
            if row.user_id in wanted
            and row.action == "migrate"
            and row.error_code in FOR_GOOD_CODES
            and not _json(row.detail)["outcome"].get("dry_run", False)
        }

    async def lock_counters(
        self, app_id: str, partitions: Sequence[int]
    ) -> dict[int, dict[str, Any]]:
        self._server.run("lock_counters", partitions=partitions)
        return {
            p: copy.deepcopy(self._t.counters[(app_id, p)])
            for p in partitions
            if (app_id, p) in self._t.counters
        }

    async def save_counters(
        self, app_id: str, totals: Mapping[int, Mapping[str, Any]], now: datetime
    ) -> None:
        self._server.run("save_counters", totals=totals)
        for partition, total in totals.items():
            self._t.counters[(app_id, partition)] = copy.deepcopy(dict(total))

    async def session_documents(self, user_ids: Sequence[str]) -> list[Any]:
        self._server.run("session_documents", user_ids=user_ids)
        documents = []
        for user in user_ids:
            row = self._t.sessions.get(user)
            if row is None:
                continue
            codes = self._t.steps[row.session_id]
            steps = [
                {
                    "step_number": step.number,
                    "step_key": step.key,
                    "status": _STATUS[code],
                    "required": step.required,
                    "completed_at": codes.completed_at if code == "c" else None,
                }
                for step, code in zip(STEPS, codes.step_codes, strict=True)
            ]
            documents.append({**row._asdict(), "steps": steps})
        return documents

    async def mark_mirror_pending(self, user_ids: Sequence[str], now: datetime) -> None:
        self._server.run("mark_mirror_pending", user_ids=user_ids)
        self._t.mirror_pending.update(user_ids)


class FakeRedis:
    """``SessionMirror``: the session documents and user pointers, as Redis keeps them."""

    def __init__(self) -> None:
        self.sessions: dict[str, Mapping[str, Any]] = {}
        self.users: dict[str, str] = {}
        self.up = True
        self.writes = 0

    async def write_sessions(
        self,
        documents: Sequence[Mapping[str, Any]],
        *,
        stale_sessions: Sequence[str],
        users_without_session: Sequence[str],
    ) -> None:
        if not self.up:
            raise MirrorUnavailable("ConnectionError: Error 111 connecting (fake Redis is down)")
        self.writes += 1
        for session_id in stale_sessions:
            self.sessions.pop(str(session_id), None)
        for user in users_without_session:
            self.users.pop(user, None)
        for document in documents:
            self.sessions[str(document["session_id"])] = document
            self.users[document["user_id"]] = str(document["session_id"])


def _json(text: bytes) -> dict[str, Any]:
    import json

    value: dict[str, Any] = json.loads(text)
    return value
