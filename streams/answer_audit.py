"""The worker's audit of its own promise: every request record has exactly one answer.

Every ``AUDIT_EVERY_S`` each worker audits the request partitions it owns
(``agents.core.answer_audit``): it reads the answers published since its last round on the
partition's outcome and dead-letter topics, then the request records between the audited limit
and the group's committed offset, and pairs them. The committed offset used is the one seen a
round earlier: a transaction's offset commit can be visible a moment before its answers are, and
a round later every answer of the records below it is readable. A finding shows in ``health``
(degraded), ``/metrics``, the dashboard and a WARNING line within two rounds of the commit that
skipped the record; the audit's position is in PostgreSQL, so whichever worker owns the
partition next goes on from there, and a hole made while no worker ran (the group's offset moved
by hand) is found in the first rounds after they start.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mode import Service

from agents.core.answer_audit import (
    Finding,
    PartitionLedger,
    RequestSeen,
    replay_of,
)
from agents.core.offset_ranges import OffsetRanges
from agents.stores import answer_audit as store
from agents.stores.answer_audit import AuditPosition, FindingRow
from streams import topics
from streams.codecs import answered_offset
from streams.partition_reader import PartitionReader
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.resources import Resources

log = logging.getLogger(__name__)

AUDIT_EVERY_S = 10.0
# When a partition's audit begins, the answers of this many seconds before are read too: a
# batch's answers are sent within seconds of its transaction's commit (a failed commit aborts,
# and the retry sends them anew).
START_MARGIN_S = 60
ANSWER_TOPICS = (*topics.OUTCOME_TOPICS.values(), topics.DEAD_LETTER)
# Findings reported by name in one WARNING line (the rest are counted).
_NAMED = 10


async def count_answers(
    reader: PartitionReader,
    ledger: PartitionLedger,
    topic: str,
    start: int,
    end: int,
    *,
    each: Callable[[int, Any], Awaitable[None]] | None = None,
) -> tuple[list[Finding], int, int]:
    """Count the answers of ``topic``'s partition ``ledger.partition`` in ``[start, end)``:
    the duplicates found, how many answers named no request (published without headers), and
    how many records were read. ``each(offset, record)`` is called for every answer naming a
    request at or above the ledger's floor."""
    duplicates: list[Finding] = []
    unnamed = read = 0
    async for records in reader.read(topic, ledger.partition, start, end):
        read += len(records)
        for record in records:
            origin = answered_offset(record.headers)
            if origin is None or origin[0] != ledger.partition:
                unnamed += 1
                continue
            if origin[1] < ledger.floor:
                continue
            found = ledger.answer(origin[1])
            if found is not None:
                duplicates.append(found)
            if each is not None:
                await each(origin[1], record)
    return duplicates, unnamed, read


async def judge_requests(
    reader: PartitionReader, ledger: PartitionLedger, start: int, end: int
) -> AsyncIterator[tuple[list[FindingRow], list[tuple[int, int]], int]]:
    """Judge the request records of ``[start, end)``, a fetch at a time: per fetch, the
    unanswered records (with the request id and user their value names), the originals whose
    replay is answered, and how many records were read. The ledger ends audited to ``end``."""
    async for records in reader.read(topics.REQUESTED, ledger.partition, start, end):
        by_offset = {record.offset: record for record in records}
        seen = [RequestSeen(record.offset, replay_of(record.headers)) for record in records]
        unanswered, repaired = ledger.judge(seen, records[-1].offset + 1)
        findings = [
            FindingRow(f, *_request_identity(by_offset[f.offset].value)) for f in unanswered
        ]
        yield findings, repaired, len(records)
    ledger.advance(end)


def _request_identity(value: bytes | None) -> tuple[str | None, str | None]:
    """The request id and user id a request's value names, if it is a JSON object that does."""
    try:
        body = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(body, dict):
        return None, None
    request_id, user_id = body.get("request_id"), body.get("user_id")
    return (
        request_id if isinstance(request_id, str) else None,
        user_id if isinstance(user_id, str) else None,
    )


@dataclass
class AuditTally:
    """What this worker's audit did: shown in its status and ``/metrics``."""

    rounds: int = 0
    records: int = 0
    answers: int = 0
    errors: int = 0
    last_error: str | None = None
    last_round_at: datetime | None = None
    found: dict[str, int] = field(default_factory=dict)


class AnswerAuditor(Service):
    """Audits the owned request partitions every ``AUDIT_EVERY_S`` (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        resources: Resources,
        owned: Callable[[], Iterable[int]],
        name: Callable[[], str],
        *,
        every_s: float = AUDIT_EVERY_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.resources = resources
        self.owned = owned
        self.name = name
        self.every_s = every_s
        self.tally = AuditTally()
        self._reader = PartitionReader(settings.kafka_bootstrap_servers)
        # The group's committed offsets seen in the previous round: this round's limits.
        self._limits: dict[int, int] = {}
        self._positioned: set[int] = set()  # partitions known to have an audit position

    @Service.task
    async def _audit(self) -> None:
        # The first round as soon as the pools exist: a partition never audited before starts
        # where the group stands now, so what this worker answers from its start is audited.
        await self.resources.ready.wait()
        while not self.should_stop:
            try:
                await self.audit_round()
            except Exception as exc:  # noqa: BLE001 - a server away: the next round goes on
                self.tally.errors += 1
                self.tally.last_error = f"{type(exc).__name__}: {exc}"
                log.info("answer audit: round skipped (%s)", self.tally.last_error)
                await self._reader.stop()  # started afresh by the next round
            await self.sleep(self.every_s)

    async def on_stop(self) -> None:
        await self._reader.stop()

    async def audit_round(self) -> list[FindingRow]:
        """One round over the owned partitions; the new findings."""
        committed = await self.resources.group_offsets.committed()
        limits, self._limits = self._limits, dict(committed)
        # Every partition gets its position at the first round, owned or not, so that a new
        # deployment's audit starts before its first answers are committed.
        for partition in range(self.settings.topic_partitions):
            if partition not in self._positioned:
                pool, app_id = self.resources.pool, self.settings.app_id
                if await store.load_position(pool, app_id, partition) is None:
                    await self._start(partition)
                self._positioned.add(partition)
        found: list[FindingRow] = []
        for partition in sorted(self.owned()):
            limit = limits.get(partition)
            found.extend(await self.audit_partition(partition, limit))
        self.tally.rounds += 1
        self.tally.last_round_at = datetime.now(UTC)
        if found:
            self._warn(found)
        return found

    async def audit_partition(self, partition: int, limit: int | None) -> list[FindingRow]:
        """Audit one partition up to ``limit`` (a committed offset seen a round ago)."""
        app_id = self.settings.app_id
        pool = self.resources.pool
        before = await store.load_position(pool, app_id, partition)
        if before is None:
            await self._start(partition)
            return []
        reads = dict(before.answers_read)
        ledger = PartitionLedger(
            partition,
            before.ledger.audited_to,
            OffsetRanges(before.ledger.answered.ranges()),
            floor=before.ledger.floor,
        )
        duplicates: list[Finding] = []
        for topic in ANSWER_TOPICS:
            start = reads.get(topic, 0)
            end = (await self._reader.ends(topic, [partition]))[partition]
            twice, _, _ = await count_answers(self._reader, ledger, topic, start, end)
            duplicates.extend(twice)
            self.tally.answers += max(0, end - start)
            reads[topic] = end
        unanswered: list[FindingRow] = []
        repaired: list[tuple[int, int]] = []
        if limit is not None and limit > ledger.audited_to:
            async for found, fixed, read in judge_requests(
                self._reader, ledger, ledger.audited_to, limit
            ):
                unanswered.extend(found)
                repaired.extend(fixed)
                self.tally.records += read
        findings = [*unanswered, *(FindingRow(f) for f in duplicates)]
        after = AuditPosition(ledger, reads)
        async with pool.acquire() as conn:
            stored = await store.save_round(
                conn,
                app_id,
                before=before,
                after=after,
                findings=findings,
                repaired=repaired,
                found_by=self.name(),
                now=datetime.now(UTC),
            )
        if not stored:
            return []
        for row in findings:
            self.tally.found[row.finding.kind] = self.tally.found.get(row.finding.kind, 0) + 1
        return findings

    async def _start(self, partition: int) -> None:
        """The partition's first position: judged from the group's committed offset on, with the
        answers of the last ``START_MARGIN_S`` read (an answer to a record at or past that
        offset may have been committed just before or after it was read: it is among them).
        Answers to records below it are not judged. Without a committed offset, from the
        beginning of both."""
        committed = (await self.resources.group_offsets.committed()).get(partition)
        if committed is None:
            start = (await self._reader.beginnings(topics.REQUESTED, [partition]))[partition]
            reads = {
                topic: (await self._reader.beginnings(topic, [partition]))[partition]
                for topic in ANSWER_TOPICS
            }
        else:
            start = committed
            since_ms = int((time.time() - START_MARGIN_S) * 1000)
            reads = {
                topic: (await self._reader.offsets_since(topic, [partition], since_ms))[partition]
                for topic in ANSWER_TOPICS
            }
        pool, app_id = self.resources.pool, self.settings.app_id
        await store.start_position(pool, app_id, partition, start, reads)

    def _warn(self, found: Sequence[FindingRow]) -> None:
        named = ", ".join(
            f"{row.finding.kind} {row.finding.partition}:{row.finding.offset}"
            + (f" (user {row.user_id})" if row.user_id else "")
            for row in found[:_NAMED]
        )
        more = f" and {len(found) - _NAMED} more" if len(found) > _NAMED else ""
        log.warning(
            "answer audit: %d request record(s) of %s without exactly one answer: %s%s"
            " (migrator audit; migrator replay --unanswered)",
            len(found),
            topics.REQUESTED,
            named,
            more,
        )
