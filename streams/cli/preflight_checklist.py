"""``migrator preflight``'s checklist: the judgments over facts already gathered, and the text.

Pure: no I/O, no clock. ``preflight_probes`` gathers the facts from the servers, the rehearsal
(``agents.jobs.rehearsal``) runs on PostgreSQL; this module decides what each fact means for a
rollout (fine, worth a look, or a blocker) and says it in one line, with a one-line fix for
every problem. A blocker makes the command exit 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail", "skip"]
MARKS: dict[Status, str] = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "–"}


@dataclass(frozen=True)
class Item:
    """One line of the checklist: ``fail`` is a blocker, ``warn`` worth a look, ``skip`` not
    checked (a server it needs did not answer, or it is not visible from here)."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def blocker(self) -> bool:
        return self.status == "fail"


def ok(name: str, detail: str) -> Item:
    return Item(name, "ok", detail)


def fail(name: str, detail: str, fix: str) -> Item:
    return Item(name, "fail", detail, fix)


def render(items: Sequence[Item]) -> list[str]:
    """The checklist's lines: a mark, the name, what was found; a fix under each ✗ and !."""
    lines = []
    for item in items:
        lines.append(f"{MARKS[item.status]} {item.name}: {item.detail}")
        if item.fix and item.status in ("fail", "warn"):
            lines.append(f"    fix: {item.fix}")
    return lines


def summary(items: Sequence[Item], seconds: float) -> str:
    blockers = sum(item.blocker for item in items)
    warnings = sum(item.status == "warn" for item in items)
    verdict = "ready" if not blockers else f"{blockers} blocker{'s' if blockers > 1 else ''}"
    extra = f", {warnings} to look at" if warnings else ""
    return f"preflight: {verdict}{extra} ({len(items)} checks in {seconds:.1f} s)"


def exit_code(items: Sequence[Item]) -> int:
    return 1 if any(item.blocker for item in items) else 0


# ---------------------------------------------------------------------------------------------
# Kafka's release, inferred from the APIs a broker serves (the protocol does not carry it).

# (release, api key, its oldest version at least): Kafka 4.0 dropped the oldest protocol
# versions (KIP-896); Fetch's oldest went from 0 to 4 (a 4.3.1 broker answers Fetch 4-18).
_RELEASE_MARKS: tuple[tuple[str, int, int], ...] = (("4.0", 1, 4),)
# (release, api key the broker must serve)
_RELEASE_KEYS: tuple[tuple[str, int], ...] = (
    ("3.9", 80),  # AddRaftVoter (KIP-853)
    ("3.8", 75),  # DescribeTopicPartitions (KIP-966)
    ("3.0", 61),  # DescribeProducers (KIP-664)
)


def kafka_release(api_versions: Mapping[int, tuple[int, int]]) -> str:
    """``≥ 4.0``-style lower bound of a broker's release from its ``ApiVersions`` answer."""
    for release, key, oldest in _RELEASE_MARKS:
        if key in api_versions and api_versions[key][0] >= oldest:
            return f">= {release}"
    for release, key in _RELEASE_KEYS:
        if key in api_versions:
            return f">= {release}"
    return "< 3.0"


# ---------------------------------------------------------------------------------------------
# The schema.


def judge_schema(
    shipped: Sequence[tuple[int, str, str]], applied: Mapping[int, tuple[str, str]] | None
) -> Item:
    """``shipped``: (version, name, sha256) of this release's DDL; ``applied``: what
    ``schema_migrations`` records (None: the table does not exist)."""
    name = "schema"
    init = "migrator db init (applies what is missing, each file once)"
    if applied is None:
        return fail(name, "not applied (no schema_migrations table)", init)
    known = {version for version, _, _ in shipped}
    ahead = sorted(set(applied) - known)
    if ahead:
        names = ", ".join(applied[v][0] for v in ahead)
        return fail(
            name,
            f"the database is ahead of this release: {names} applied, not shipped here",
            "run the release that shipped those files (this one is older)",
        )
    changed = [n for v, n, sha in shipped if v in applied and applied[v][1] != sha]
    if changed:
        return fail(
            name,
            f"{', '.join(changed)} changed after it was applied",
            "ship the change as a new numbered file in sql/ddl; never edit an applied one",
        )
    missing = [n for v, n, _ in shipped if v not in applied]
    if missing:
        return fail(name, f"behind: {', '.join(missing)} not applied", init)
    latest = shipped[-1][1] if shipped else "none"
    return ok(name, f"current: {len(shipped)} DDL files applied, the latest {latest}")


# ---------------------------------------------------------------------------------------------
# Topics.


@dataclass(frozen=True)
class TopicWanted:
    name: str
    partitions: int
    replication: int
    max_message_bytes: int | None  # None: the broker's default is fine
    create: str  # the command that creates it as the service wants it


@dataclass(frozen=True)
class TopicFound:
    partitions: int
    replication: int  # the smallest replica count of its partitions
    min_insync_replicas: int | None
    max_message_bytes: int | None
    under_replicated: int = 0  # partitions whose in-sync replicas are fewer than the replicas


def judge_topic(wanted: TopicWanted, found: TopicFound | None) -> Item:
    name = f"topic {wanted.name}"
    if found is None:
        return fail(name, "missing", wanted.create)
    problems: list[str] = []
    fixes: list[str] = []
    if found.partitions != wanted.partitions:
        problems.append(
            f"{found.partitions} partitions, MIGRATOR_TOPIC_PARTITIONS says {wanted.partitions}"
        )
        fixes.append(
            "every topic needs the same partition count (outputs go to the request's "
            "partition): set MIGRATOR_TOPIC_PARTITIONS to the topics' count, or recreate "
            "the topics (partitions can be added, never removed)"
        )
    if found.replication < wanted.replication:
        problems.append(
            f"replication {found.replication}, MIGRATOR_TOPIC_REPLICATION_FACTOR says "
            f"{wanted.replication}"
        )
        fixes.append("raise it with kafka-reassign-partitions (a new replica list)")
    isr = found.min_insync_replicas
    if isr is not None and isr > found.replication:
        problems.append(
            f"min.insync.replicas {isr} above its {found.replication} replicas: "
            "every acks=all write fails"
        )
        fixes.append(
            f"kafka-configs --alter --entity-type topics --entity-name {wanted.name} "
            f"--add-config min.insync.replicas={found.replication}"
        )
    if (
        wanted.max_message_bytes is not None
        and found.max_message_bytes is not None
        and found.max_message_bytes < wanted.max_message_bytes
    ):
        problems.append(
            f"max.message.bytes {found.max_message_bytes}, the service needs "
            f"{wanted.max_message_bytes}"
        )
        fixes.append(
            f"kafka-configs --alter --entity-type topics --entity-name {wanted.name} "
            f"--add-config max.message.bytes={wanted.max_message_bytes}"
        )
    if found.under_replicated:
        problems.append(f"{found.under_replicated} partitions under-replicated")
        fixes.append("a broker is down or behind: bring it back before the rollout")
    if problems:
        return fail(name, "; ".join(problems), "; ".join(fixes))
    detail = (
        f"{found.partitions} partitions, replication {found.replication}, "
        f"min.insync.replicas {_or_default(isr)}, max.message.bytes "
        f"{_or_default(found.max_message_bytes)}"
    )
    if found.replication > 1 and isr is not None and isr < 2:
        return Item(
            name,
            "warn",
            detail + ": an acknowledged write can live on one broker only",
            f"kafka-configs --alter --entity-type topics --entity-name {wanted.name} "
            "--add-config min.insync.replicas=2",
        )
    return ok(name, detail)


def _or_default(value: int | None) -> str:
    return "broker default" if value is None else str(value)


# ---------------------------------------------------------------------------------------------
# The consumer group.


def judge_group(
    group: str,
    state: str | None,
    members: int,
    committed: Mapping[int, int],
    end: Mapping[int, int],
) -> Item:
    """``state`` None: the group never committed (a first rollout); lag is end − committed."""
    name = f"consumer group {group}"
    beyond = {p: c for p, c in committed.items() if p in end and c > end[p]}
    if beyond:
        where = ", ".join(f"partition {p} at {c} > end {end[p]}" for p, c in sorted(beyond.items()))
        return fail(
            name,
            f"committed offsets beyond the topic's end ({where}): the topic was recreated",
            f"kafka-consumer-groups --group {group} --topic user-migration-requested "
            "--reset-offsets --to-earliest --execute (with every worker stopped)",
        )
    lag = {p: end[p] - committed.get(p, 0) for p in end}
    total = sum(lag.values())
    if state is None and not committed:
        return ok(name, f"no committed offsets yet (a first run); {total} requests waiting")
    by = ", ".join(f"{p}:{n}" for p, n in sorted(lag.items()))
    return ok(name, f"{state or 'unknown'}, {members} members; lag {total} ({by})")


# ---------------------------------------------------------------------------------------------
# Open transactions.


@dataclass(frozen=True)
class PartitionEnds:
    """A partition's high watermark and last stable offset (a read_committed consumer's end)."""

    topic: str
    partition: int
    high_watermark: int
    last_stable: int

    @property
    def open_transaction(self) -> bool:
        return self.last_stable < self.high_watermark


@dataclass(frozen=True)
class OpenTransaction:
    """An open transaction seen at both looks at the same first offset."""

    topic: str
    partition: int
    first_offset: int
    records_held: int  # records behind it that read_committed consumers cannot read yet
    age_s: float | None  # from its first record's timestamp; None when it could not be read


def still_open(
    first: Sequence[PartitionEnds], second: Sequence[PartitionEnds]
) -> list[tuple[PartitionEnds, PartitionEnds]]:
    """Partitions whose last stable offset stayed at the same open transaction across the two
    looks: a transaction that moved on in between was one in progress, not one left hanging."""
    before = {(e.topic, e.partition): e for e in first if e.open_transaction}
    return [
        (before[(e.topic, e.partition)], e)
        for e in second
        if e.open_transaction
        and (e.topic, e.partition) in before
        and before[(e.topic, e.partition)].last_stable == e.last_stable
    ]


def judge_transactions(
    partitions: int, wait_s: float, found: Sequence[OpenTransaction], *, command: str
) -> Item:
    """``command``: how an operator runs Kafka's tools here (``kafka-transactions.sh`` or
    ``migrator stack kafka-cli transactions``)."""
    name = "hanging transactions"
    if not found:
        return ok(name, f"none on {partitions} partitions (two looks {wait_s:g} s apart)")
    shown = "; ".join(
        f"{t.topic}[{t.partition}] open from offset {t.first_offset}"
        + (f" for {t.age_s:.0f} s" if t.age_s is not None else "")
        + f", {t.records_held} records held back"
        for t in found[:4]
    )
    more = f" and {len(found) - 4} more" if len(found) > 4 else ""
    first = found[0]
    return fail(
        name,
        f"{shown}{more}: read_committed consumers (the workers) stop there",
        "a transactional producer died mid-transaction: the coordinator aborts it after its "
        "transaction.timeout.ms (60 s by default); to end it now: "
        f"{command} abort --topic {first.topic} --partition {first.partition} "
        f"--start-offset {first.first_offset}",
    )


# ---------------------------------------------------------------------------------------------
# PostgreSQL settings.

# Connections a worker's pool opens at most (``streams.resources``), and one command-line run.
WORKER_POOL_MAX = 10
CLI_POOL_MAX = 8


def judge_connections(
    max_connections: int, reserved: int, in_use: int, workers: int, *, mine: int = 1
) -> Item:
    """Room for ``workers`` worker pools and one command-line run, beside the connections
    open now (``mine`` of them are the preflight's own)."""
    name = "PostgreSQL connections"
    usable = max_connections - reserved
    needed = workers * WORKER_POOL_MAX + CLI_POOL_MAX
    detail = (
        f"max_connections {max_connections} ({reserved} reserved), {in_use - mine} in use by "
        f"others; {workers} worker{'s need' if workers != 1 else ' needs'} up to {needed} "
        f"({WORKER_POOL_MAX} each + {CLI_POOL_MAX} for a command)"
    )
    if usable < needed:
        return fail(
            name,
            detail,
            f"raise max_connections to at least {needed + reserved} (restart), or run fewer "
            "workers (--workers N says how many you plan)",
        )
    if usable - (in_use - mine) < needed:
        return Item(
            name,
            "warn",
            detail + ", more than is free now",
            "the connections in use now are other clients' (or running workers'): check "
            "pg_stat_activity",
        )
    return ok(name, detail)


def judge_durability(synchronous_commit: str, fsync: str) -> Item:
    """An outcome says what PostgreSQL committed; a commit PostgreSQL can lose breaks that."""
    name = "PostgreSQL durability"
    detail = f"synchronous_commit {synchronous_commit}, fsync {fsync}"
    if fsync != "on":
        return fail(
            name,
            detail + ": a crash can corrupt the database",
            "ALTER SYSTEM SET fsync = on; SELECT pg_reload_conf()",
        )
    if synchronous_commit == "off":
        return fail(
            name,
            detail + ": a crash can lose commits whose outcomes Kafka already published",
            "ALTER SYSTEM SET synchronous_commit = on; SELECT pg_reload_conf()",
        )
    return ok(name, detail)


# ---------------------------------------------------------------------------------------------
# Disk.

DISK_FAIL_SHARE = 0.05
DISK_WARN_SHARE = 0.15
_GIB = 1024**3


@dataclass(frozen=True)
class Disk:
    server: str
    path: str | None  # where it keeps its data, as it says; None: it does not say
    free_bytes: int | None  # None: the path is not visible from this machine
    total_bytes: int | None = None
    why_not: str = ""


def judge_disk(disk: Disk) -> Item:
    name = f"disk of {disk.server}"
    if disk.free_bytes is None or not disk.total_bytes:
        where = f" ({disk.path})" if disk.path else ""
        return Item(name, "skip", f"not visible from here{where}: {disk.why_not}")
    share = disk.free_bytes / disk.total_bytes
    detail = (
        f"{disk.free_bytes / _GIB:.1f} GiB free of {disk.total_bytes / _GIB:.1f} GiB "
        f"({share:.0%}) at {disk.path}"
    )
    if share < DISK_FAIL_SHARE:
        return fail(
            name, detail, "free space before the rollout: the service's tables grow (README)"
        )
    if share < DISK_WARN_SHARE:
        return Item(
            name, "warn", detail, "the README's Operations section says what grows, how fast"
        )
    return ok(name, detail)


# ---------------------------------------------------------------------------------------------
# The rehearsal.


def judge_rehearsal(
    sampled: int,
    passed: int,
    failures: Mapping[str, Sequence[str]],
    *,
    accepted: frozenset[str] = frozenset(),
) -> Item:
    """``failures``: code → the users failing with it; codes in ``accepted`` (known bad data
    the rollout will answer ``failed``) are reported without blocking."""
    name = "rollback rehearsal"
    if sampled == 0:
        return Item(name, "skip", "no legacy user left to migrate")
    head = (
        f"{passed} of {sampled} sampled users migrated, validated, rolled back and verified "
        "by hash; nothing kept, nothing published"
    )
    if not failures:
        return ok(name, head)
    by_code = "; ".join(
        f"{code}: {len(users)} ({', '.join(list(users)[:3])}{', …' if len(users) > 3 else ''})"
        for code, users in sorted(failures.items())
    )
    blocking = sorted(set(failures) - accepted)
    if not blocking:
        return Item(name, "warn", f"{head}; failing as accepted: {by_code}")
    return fail(
        name,
        f"{head}; would fail: {by_code}",
        "look at a user with `migrator validate USER`; fix the legacy rows, or accept "
        f"known bad data with --accept {','.join(blocking)}",
    )
