"""``migrator preflight``: before a rollout, one command, a checklist with ✓/✗ and a one-line
fix for each ✗; exit 1 on a blocker.

It asks each server whether it answers and which version it runs, checks the schema, the
topics (partitions, replication, ``min.insync.replicas``, ``max.message.bytes``), the consumer
group and its lag, hanging transactions on the request, outcome and control partitions,
PostgreSQL's connection room and durability, free disk where the servers keep their data (when
that is visible from here), and rehearses the rollout on a sample of real legacy users (migrate,
validate, roll back, verify the hash) inside a PostgreSQL transaction that is rolled back:
nothing changes, nothing is published. A server that does not answer is a ✗ and the checks that
need it are skipped (–): the list is always whole.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import sql
from streams import topics
from streams.cli import preflight_checklist as checklist
from streams.cli.preflight_checklist import Item, TopicWanted
from streams.settings import Settings

EXAMPLES = """examples:
  migrator preflight                         everything, a rehearsal on 100 random users
  migrator preflight --workers 4 --sample 1000
  migrator preflight --ids user-1,user-2     rehearse these users
  migrator preflight --accept unknown_legacy_step   known bad rows do not block

exit status: 0 ready, 1 a blocker (✗), 2 the command itself could not run
"""


def _postgres_down(exc: BaseException, settings: Settings) -> Item:
    from streams.connections import redact, unreachable

    return checklist.fail(
        "PostgreSQL answers",
        str(exc).split(";")[0] or type(exc).__name__,
        unreachable("PostgreSQL", redact(settings.database_url)).split("; ", 1)[1],
    )


async def _postgres(settings: Settings, args: argparse.Namespace) -> list[Item]:
    from agents.jobs.rehearsal import rehearse
    from agents.stores import postgres
    from streams.cli import preflight_probes as probes
    from streams.connections import connect, redact

    try:
        conn = await connect(settings)
    except Exception as exc:  # noqa: BLE001 - said in the checklist
        skipped = "PostgreSQL does not answer"
        return [
            _postgres_down(exc, settings),
            *(
                Item(name, "skip", skipped)
                for name in (
                    "schema",
                    "PostgreSQL connections",
                    "PostgreSQL durability",
                    "disk of PostgreSQL",
                    "rollback rehearsal",
                )
            ),
        ]
    try:
        facts = await postgres.server_facts(conn)
        items = [
            checklist.ok(
                "PostgreSQL answers", f"{facts.server_version} at {redact(settings.database_url)}"
            )
        ]
        applied = await postgres.applied_schema(conn) if facts.schema_recorded else None
        items.append(checklist.judge_schema(_shipped(), applied))
        items.append(
            checklist.judge_connections(
                facts.max_connections,
                facts.reserved_connections,
                facts.connections_in_use,
                args.workers,
            )
        )
        items.append(checklist.judge_durability(facts.synchronous_commit, facts.fsync))
        items.append(
            checklist.judge_disk(
                probes.disk_at("PostgreSQL", facts.data_directory, probes.postgres_host(settings))
            )
        )
        current = items[1].status == "ok"
        if args.sample == 0 and not args.ids:
            items.append(Item("rollback rehearsal", "skip", "--sample 0: not asked for"))
        elif not current:
            items.append(
                Item("rollback rehearsal", "skip", "the schema is not current (see above)")
            )
        else:
            try:
                report = await rehearse(
                    conn, args.ids or [], app_id=settings.app_id, sample=args.sample
                )
            except Exception as exc:  # noqa: BLE001 - PostgreSQL went away or refused
                items.append(
                    checklist.fail(
                        "rollback rehearsal",
                        f"could not finish ({str(exc) or type(exc).__name__}); nothing was "
                        "kept (its transaction rolls back)",
                        "make sure PostgreSQL answers, then run the preflight again",
                    )
                )
                return items
            item = checklist.judge_rehearsal(
                len(report.sampled),
                len(report.passed),
                report.failures,
                accepted=frozenset(args.accept),
            )
            items.append(
                Item(item.name, item.status, f"{item.detail} ({report.seconds:.1f} s)", item.fix)
            )
        return items
    finally:
        await conn.close()


def _shipped() -> list[tuple[int, str, str]]:
    import hashlib

    return [
        (version, name, hashlib.sha256(text.encode("utf-8")).hexdigest())
        for version, name, text in sql.ddl_files()
    ]


async def _redis(settings: Settings) -> list[Item]:
    from streams.cli import preflight_probes as probes
    from streams.connections import redact

    try:
        facts = await asyncio.wait_for(probes.redis_facts(settings), timeout=10)
    except Exception as exc:  # noqa: BLE001 - said in the checklist
        return [
            checklist.fail(
                "Redis answers",
                f"{redact(settings.redis_url)}: {str(exc) or type(exc).__name__}",
                "start Redis, or point REDIS_URL at it",
            ),
            Item("disk of Redis", "skip", "Redis does not answer"),
        ]
    return [
        checklist.ok("Redis answers", f"{facts.version} at {redact(settings.redis_url)}"),
        checklist.judge_disk(probes.disk_at("Redis", facts.directory, probes.redis_host(settings))),
    ]


def wanted_topics(settings: Settings) -> list[TopicWanted]:
    """The topics the service needs, as it would create them."""
    bootstrap = settings.kafka_bootstrap_servers[0]

    def create(name: str, partitions: int, config: dict[str, str]) -> str:
        extra = "".join(f" --config {key}={value}" for key, value in config.items())
        return (
            f"start a worker (it creates missing topics), or kafka-topics.sh --bootstrap-server "
            f"{bootstrap} --create --topic {name} --partitions {partitions} "
            f"--replication-factor {settings.topic_replication_factor}{extra}"
        )

    found = []
    for name in topics.PUBLIC_TOPICS:
        config = topics.topic_config(name)
        limit = config.get("max.message.bytes")
        found.append(
            TopicWanted(
                name,
                settings.topic_partitions,
                settings.topic_replication_factor,
                int(limit) if limit else None,
                create(name, settings.topic_partitions, config),
            )
        )
    control = topics.control_topic(settings.app_id)
    found.append(
        TopicWanted(
            control,
            1,
            settings.topic_replication_factor,
            None,
            create(control, 1, topics.CONTROL_TOPIC_CONFIG),
        )
    )
    return found


async def _kafka(settings: Settings, args: argparse.Namespace) -> list[Item]:
    from streams.cli import preflight_probes as probes

    wanted = wanted_topics(settings)
    try:
        facts = await probes.kafka_facts(settings, [t.name for t in wanted], args.transaction_wait)
    except Exception as exc:  # noqa: BLE001 - said in the checklist
        reason = str(exc) or type(exc).__name__
        return [
            checklist.fail(
                "Kafka answers",
                f"{settings.kafka_broker_url}: {reason}",
                "start the brokers, or point KAFKA_BROKER_URL at them",
            ),
            *(
                Item(name, "skip", "Kafka does not answer")
                for name in ("topics", "consumer group", "hanging transactions", "disk of Kafka")
            ),
        ]
    items = [
        checklist.ok(
            "Kafka answers",
            f"{len(facts.brokers)} broker{'s' if len(facts.brokers) != 1 else ''} "
            f"(cluster {facts.cluster_id}, controller {facts.controller}), release "
            f"{checklist.kafka_release(facts.api_versions)} (from the APIs it serves: Kafka "
            "does not send its version)",
        )
    ]
    items += [checklist.judge_topic(t, facts.topics.get(t.name)) for t in wanted]
    items.append(
        checklist.judge_group(
            settings.app_id,
            facts.group_state,
            facts.group_members,
            facts.committed,
            facts.request_ends,
        )
    )
    items.append(
        checklist.judge_transactions(
            facts.transaction_partitions,
            args.transaction_wait,
            facts.open_transactions,
            command=probes.kafka_tools(settings),
        )
    )
    items.append(checklist.judge_disk(probes.log_dir_disk(facts, probes.kafka_host(settings))))
    return items


async def run(settings: Settings, args: argparse.Namespace) -> list[Item]:
    """Every check; the three servers are asked side by side."""
    kafka, postgres, redis = await asyncio.gather(
        _kafka(settings, args), _postgres(settings, args), _redis(settings)
    )
    return [postgres[0], redis[0], kafka[0], *postgres[1:], *redis[1:], *kafka[1:]]


def _preflight(args: argparse.Namespace) -> int:
    from streams.cli.selection import read_ids

    settings = Settings.from_env()
    args.ids = read_ids(args)
    started = time.monotonic()
    print(
        f"preflight of app id {settings.app_id}: {settings.topic_partitions} partitions, "
        f"replication {settings.topic_replication_factor}, {args.workers} "
        f"worker{'s' if args.workers != 1 else ''} planned",
        flush=True,
    )
    items = asyncio.run(run(settings, args))
    for line in checklist.render(items):
        print(line)
    print(checklist.summary(items, time.monotonic() - started))
    return checklist.exit_code(items)


def _count(low: int) -> Any:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if number < low:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= {low}")
        return number

    return parse


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0.2 <= seconds <= 60:
        raise argparse.ArgumentTypeError(f"{value!r}: between 0.2 and 60 seconds")
    return seconds


def _codes(value: str) -> list[str]:
    return [code.strip() for code in value.split(",") if code.strip()]


def register(commands: Any) -> None:
    from streams.cli.selection import add_id_options

    parser = commands.add_parser(
        "preflight",
        help="before a rollout: servers, schema, topics, group, transactions, settings, disk, "
        "and a rehearsal on real rows; exit 1 on a blocker",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sample",
        type=_count(0),
        default=100,
        metavar="N",
        help="random legacy users to rehearse (100; 0: no rehearsal)",
    )
    add_id_options(parser, what="users to rehearse instead of a sample")
    parser.add_argument(
        "--accept",
        type=_codes,
        default=[],
        metavar="CODE[,CODE]",
        help="rehearsal failures with these codes (known bad data) do not block",
    )
    parser.add_argument(
        "--workers",
        type=_count(1),
        default=1,
        metavar="N",
        help="workers the rollout will run, for the connection check (1)",
    )
    parser.add_argument(
        "--transaction-wait",
        type=_seconds,
        default=2.0,
        metavar="S",
        help="seconds between the two looks at open transactions (2)",
    )
    parser.set_defaults(handler=_preflight)
