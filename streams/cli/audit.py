"""``migrator audit``: verify from the outside that every request record got exactly one answer.

In the spirit of Kafka's verifiable consumer: it reads ``user-migration-requested`` as a
read_committed consumer (the whole topic, or ``--since``/``--partition``), the outcome and
dead-letter topics, and pairs every request record below the group's committed offset with the
answers naming it (``migrator-original-partition``/``-offset`` headers). It reports:

- unanswered records (no answer, offset committed past them) — recorded as findings in
  PostgreSQL, so ``migrator replay --unanswered`` can publish them again;
- duplicated answers (a record answered twice);
- answers that disagree with PostgreSQL: ``migrated`` with no session and no later rollback,
  ``rolled-back`` whose user still holds a session (or a legacy row marked migrated) with no later
  migration, an answer whose request is not in the audit log;
- records above the committed offset (pending: not answered yet, not judged).

Memory is bounded: answered offsets are kept as ranges, findings as counts and samples. Exit 1 on
a finding, 0 when clean, 2 when it could not run. ``--acknowledge`` closes the open duplicated
findings (an operator has looked; duplicates cannot be undone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from streams.cli.errors import CliError
from streams.cli.output import time_argument
from streams.settings import Settings

if TYPE_CHECKING:
    from agents.stores.answer_audit import FindingRow
    from streams.partition_reader import PartitionReader

EXAMPLES = """examples:
  migrator audit                              every partition, the whole topic
  migrator audit --since 2026-12-02T08:00     requests published since then
  migrator audit --partition 1 --json         one partition, a JSON report
  migrator audit --acknowledge                close the duplicated findings after a look
"""

SAMPLES = 20
# Answers are published after their request: an answer topic is read from this long before
# --since (producers' clocks may differ a little).
ANSWER_SLACK_S = 300
# Answers checked against PostgreSQL per query.
CHECK_BATCH = 2000

_CHECK_SQL = """
SELECT a.i,
       EXISTS (SELECT 1 FROM onboarding_sessions s WHERE s.user_id = a.user_id) AS has_session,
       (SELECT l.status FROM legacy_onboarding_status l WHERE l.user_id = a.user_id) AS legacy,
       r.id AS log_id,
       EXISTS (
           SELECT 1 FROM onboarding_migration_log later
           WHERE later.user_id = a.user_id AND later.id > r.id
             AND later.outcome IN ('migrated', 'rolled_back') AND later.outcome <> a.outcome
             AND NOT coalesce((later.detail -> 'outcome' ->> 'dry_run')::boolean, false)
       ) AS undone_later
FROM unnest($1::int[], $2::text[], $3::uuid[], $4::text[]) AS a(i, user_id, request_id, outcome)
LEFT JOIN LATERAL (
    SELECT min(id) AS id FROM onboarding_migration_log WHERE request_id = a.request_id
) r ON true
"""


@dataclass
class Kind:
    """Findings of one kind: a count and the first samples."""

    count: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, sample: dict[str, Any]) -> None:
        self.count += 1
        if len(self.samples) < SAMPLES:
            self.samples.append(sample)


@dataclass
class AuditReport:
    partitions: dict[int, dict[str, int]] = field(default_factory=dict)
    requests: int = 0
    answers: int = 0
    pending: int = 0
    unnamed_answers: int = 0
    repaired: int = 0
    unanswered: Kind = field(default_factory=Kind)
    duplicated: Kind = field(default_factory=Kind)
    disagreeing: Kind = field(default_factory=Kind)
    disagreeing_by_check: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    peak_rss_mib: float = 0.0

    @property
    def clean(self) -> bool:
        return not (self.unanswered.count or self.duplicated.count or self.disagreeing.count)

    @property
    def seconds_per_million(self) -> float | None:
        read = self.requests + self.answers
        return round(self.seconds / read * 1_000_000, 1) if read else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "partitions": {str(p): r for p, r in sorted(self.partitions.items())},
            "request_records": self.requests,
            "answers": self.answers,
            "pending": self.pending,
            "answers_naming_no_request": self.unnamed_answers,
            "repaired_by_replay": self.repaired,
            "unanswered": vars(self.unanswered),
            "duplicated": vars(self.duplicated),
            "disagreeing_with_postgres": {
                **vars(self.disagreeing),
                "by_check": dict(self.disagreeing_by_check),
            },
            "seconds": round(self.seconds, 2),
            "seconds_per_million_records": self.seconds_per_million,
            "peak_rss_mib": self.peak_rss_mib,
        }

    def lines(self) -> list[str]:
        from streams import topics

        spans = "  ".join(
            f"{p}:[{r['from']}, {r['to']})" for p, r in sorted(self.partitions.items())
        )
        per_million = self.seconds_per_million
        out = [
            f"audit of {topics.REQUESTED}: partitions and offsets judged {spans or '(none)'}",
            f"  read {self.requests:,} request records and {self.answers:,} answers in "
            f"{self.seconds:.1f} s"
            + (f" ({per_million:g} s per million records" if per_million is not None else " (")
            + f", peak memory {self.peak_rss_mib:g} MiB)",
        ]
        for name, kind in (
            ("unanswered", self.unanswered),
            ("duplicated", self.duplicated),
            ("disagreeing with PostgreSQL", self.disagreeing),
        ):
            out.append(f"  {name}: {kind.count:,}")
            out.extend(f"    {_describe(sample)}" for sample in kind.samples[:5])
        if self.disagreeing_by_check:
            checks = ", ".join(f"{c} {n}" for c, n in sorted(self.disagreeing_by_check.items()))
            out.append(f"    by check: {checks}")
        if self.pending:
            out.append(f"  pending (above the committed offset, not judged): {self.pending:,}")
        if self.repaired:
            out.append(f"  repaired (a replay of them was answered): {self.repaired:,}")
        if self.unnamed_answers:
            out.append(
                f"  answers naming no request record (published before answers carried "
                f"their origin): {self.unnamed_answers:,}"
            )
        if self.unanswered.count:
            out.append("  next: migrator replay --unanswered (plan), then --execute")
        out.append(
            "clean: every request record has exactly one answer"
            if self.clean
            else "FINDINGS: see above (exit 1)"
        )
        return out


def _describe(sample: dict[str, Any]) -> str:
    where = f"partition {sample['partition']} offset {sample['offset']}"
    extra = ", ".join(
        f"{k} {v}" for k, v in sample.items() if k not in {"partition", "offset"} and v is not None
    )
    return f"{where}: {extra}" if extra else where


async def run_audit(
    settings: Settings,
    *,
    partitions: list[int] | None,
    since: datetime | None,
    record: bool,
    found_by: str,
) -> AuditReport:
    from agents.stores import answer_audit as store
    from streams import topics
    from streams.connections import connect
    from streams.group_offsets import GroupOffsets
    from streams.partition_reader import PartitionReader

    report = AuditReport()
    began = time.monotonic()
    reader = PartitionReader(settings.kafka_bootstrap_servers)
    group = GroupOffsets(settings.kafka_bootstrap_servers, settings.app_id)
    conn = await connect(settings)
    try:
        every = await reader.partitions(topics.REQUESTED)
        if not every:
            raise CliError(f"{topics.REQUESTED} does not exist: nothing to audit")
        chosen = sorted(set(partitions or every))
        unknown = [p for p in chosen if p not in every]
        if unknown:
            raise CliError(f"{topics.REQUESTED} has no partition {unknown[0]} (0-{max(every)})")
        committed = await group.committed()
        request_ends = await reader.ends(topics.REQUESTED, chosen)
        starts, answer_starts = await _starts(reader, chosen, since)
        checker = _PostgresCheck(conn, report)
        for partition in chosen:
            start = starts[partition]
            limit = max(start, min(committed.get(partition, 0), request_ends[partition]))
            report.partitions[partition] = {"from": start, "to": limit}
            report.pending += max(0, request_ends[partition] - limit)
            answers_from = {topic: at[partition] for topic, at in answer_starts.items()}
            rows = await _audit_partition(
                reader, checker, report, partition, (start, limit), answers_from
            )
            if record and rows:
                await store.record_findings(
                    conn, settings.app_id, rows, found_by=found_by, now=datetime.now(UTC)
                )
        await checker.flush()
    except TimeoutError as exc:
        raise CliError(f"Kafka stopped answering while reading: {exc}") from None
    finally:
        await conn.close()
        await reader.stop()
        await group.close()
    report.seconds = time.monotonic() - began
    report.peak_rss_mib = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return report


async def _starts(
    reader: PartitionReader, chosen: list[int], since: datetime | None
) -> tuple[dict[int, int], dict[str, dict[int, int]]]:
    """Where the requests are read from in each partition, and where each answer topic is:
    the beginning, or ``since`` (answers from a little earlier: an answer may be stamped
    before the request it answers reached the log)."""
    from streams import topics
    from streams.answer_audit import ANSWER_TOPICS

    if since is None:
        starts = await reader.beginnings(topics.REQUESTED, chosen)
        answer_starts = {t: await reader.beginnings(t, chosen) for t in ANSWER_TOPICS}
        return starts, answer_starts
    since_ms = int(since.timestamp() * 1000)
    starts = await reader.offsets_since(topics.REQUESTED, chosen, since_ms)
    answer_starts = {
        t: await reader.offsets_since(t, chosen, since_ms - ANSWER_SLACK_S * 1000)
        for t in ANSWER_TOPICS
    }
    return starts, answer_starts


async def _audit_partition(
    reader: PartitionReader,
    checker: _PostgresCheck,
    report: AuditReport,
    partition: int,
    requests: tuple[int, int],
    answers_from: dict[str, int],
) -> list[FindingRow]:
    """Pair one partition's requests ``[start, limit)`` with the answers on every answer topic;
    count into ``report``; return the findings of unanswered records (to record)."""
    from agents.core.answer_audit import UNANSWERED, Finding, PartitionLedger
    from agents.core.offset_ranges import OffsetRanges
    from agents.stores.answer_audit import FindingRow
    from streams import topics
    from streams.answer_audit import ANSWER_TOPICS, count_answers, judge_requests

    start, limit = requests
    # Answers to records before the range are not judged (the ledger's floor).
    ledger = PartitionLedger(partition, start, floor=start)

    async def check(offset: int, answer: Any) -> None:
        await checker.add(partition, offset, answer.value)

    for topic in ANSWER_TOPICS:
        end = (await reader.ends(topic, [partition]))[partition]
        twice, unnamed, read = await count_answers(
            reader,
            ledger,
            topic,
            answers_from[topic],
            end,
            each=None if topic == topics.DEAD_LETTER else check,
        )
        report.answers += read
        report.unnamed_answers += unnamed
        for finding in twice:
            report.duplicated.add({"partition": partition, "offset": finding.offset})
    unanswered = OffsetRanges()
    repaired = OffsetRanges()
    samples: list[FindingRow] = []
    async for found, fixed, read in judge_requests(reader, ledger, start, limit):
        report.requests += read
        for row in found:
            unanswered.add(row.finding.offset)
            if len(samples) < SAMPLES:
                samples.append(row)
        for p, o in fixed:
            if p == partition:
                repaired.add(o)
    identity = {row.finding.offset: row for row in samples}
    kept = [o for o in unanswered if o not in repaired]
    report.repaired += len(unanswered) - len(kept)
    rows = [identity.get(o) or FindingRow(Finding(UNANSWERED, partition, o)) for o in kept]
    for row in rows:
        report.unanswered.add(
            {
                "partition": partition,
                "offset": row.finding.offset,
                "request_id": row.request_id,
                "user_id": row.user_id,
            }
        )
    return rows


class _PostgresCheck:
    """Answers held against PostgreSQL, a batch per query (see ``_CHECK_SQL``)."""

    def __init__(self, conn: Any, report: AuditReport) -> None:
        self._conn = conn
        self._report = report
        self._batch: list[tuple[int, int, str, str, str]] = []

    async def add(self, partition: int, offset: int, value: bytes | None) -> None:
        try:
            body = json.loads(value or b"")
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(body, dict) or body.get("dry_run"):
            return
        outcome = body.get("outcome")
        if outcome not in ("migrated", "rolled_back"):
            return
        user, request = body.get("user_id"), body.get("request_id")
        if isinstance(user, str) and isinstance(request, str):
            self._batch.append((partition, offset, user, request, outcome))
        if len(self._batch) >= CHECK_BATCH:
            await self.flush()

    async def flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        rows = await self._conn.fetch(
            _CHECK_SQL,
            list(range(len(batch))),
            [b[2] for b in batch],
            [b[3] for b in batch],
            [b[4] for b in batch],
        )
        for row in rows:
            partition, offset, user, request, outcome = batch[row["i"]]
            check = _disagreement(
                outcome,
                has_session=row["has_session"],
                legacy=row["legacy"],
                in_log=row["log_id"] is not None,
                undone_later=row["undone_later"],
            )
            if check is not None:
                self._report.disagreeing_by_check[check] += 1
                self._report.disagreeing.add(
                    {
                        "partition": partition,
                        "offset": offset,
                        "check": check,
                        "user_id": user,
                        "request_id": request,
                    }
                )


def _disagreement(
    outcome: str, *, has_session: bool, legacy: str | None, in_log: bool, undone_later: bool
) -> str | None:
    """Which check an answer fails against PostgreSQL, if one (pure)."""
    if not in_log:
        return "answer_not_in_audit_log"
    if undone_later:
        return None
    if outcome == "migrated" and not has_session:
        return "migrated_without_session"
    if outcome == "rolled_back" and (has_session or legacy == "migrated"):
        return "rolled_back_not_restored"
    return None


def _audit(args: argparse.Namespace) -> int:
    from streams.cli.control import operator_name

    settings = Settings.from_env()
    if args.acknowledge:
        return asyncio.run(_acknowledge(settings, operator_name()))
    report = asyncio.run(
        run_audit(
            settings,
            partitions=args.partition,
            since=args.since,
            record=not args.no_record,
            found_by=f"migrator audit ({operator_name()})",
        )
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 0 if report.clean else 1


async def _acknowledge(settings: Settings, who: str) -> int:
    from agents.stores.answer_audit import acknowledge_duplicates
    from streams.connections import connect

    conn = await connect(settings)
    try:
        closed = await acknowledge_duplicates(conn, settings.app_id, by=who, now=datetime.now(UTC))
    finally:
        await conn.close()
    print(f"acknowledged {closed} duplicated finding(s)")
    return 0


def _partition(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a partition number")
    return int(value)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "audit",
        help="verify that every request record got exactly one answer (exit 1 on a finding)",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--since",
        type=time_argument,
        metavar="TIME",
        help="only request records published since TIME",
    )
    parser.add_argument(
        "--partition",
        type=_partition,
        action="append",
        metavar="N",
        help="only this partition (repeatable; default: all)",
    )
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="do not record unanswered records as findings in PostgreSQL",
    )
    parser.add_argument(
        "--acknowledge",
        action="store_true",
        help="close the open duplicated findings (health is degraded while they are open)",
    )
    parser.set_defaults(handler=_audit)
