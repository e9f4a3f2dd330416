"""``migrator replay --unanswered``: publish again exactly the request records the answer audit
found unanswered (its open findings in PostgreSQL, from the workers or ``migrator audit``).

Each record is published as it was: same key, same value (so the same ``request_id``: PostgreSQL's
ledger answers a request it already applied with the answer it recorded, so a repair run twice
changes nothing twice), same headers, to the same partition, plus ``migrator-replay-of:
partition:offset``. When the replay is answered, the audit closes the original's finding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass
from typing import Any

from streams.cli.errors import CliError
from streams.settings import Settings


@dataclass(frozen=True)
class Unanswered:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def describe(self) -> str:
        try:
            body = json.loads(self.value or b"")
        except (ValueError, UnicodeDecodeError):
            body = None
        where = f"partition {self.partition} offset {self.offset}"
        if not isinstance(body, dict):
            return f"{where}: not a valid request (its answer will be a dead letter)"
        return (
            f"{where}: {body.get('action')} user {body.get('user_id')} "
            f"request {body.get('request_id')}"
        )


async def _collect(settings: Settings) -> tuple[list[Unanswered], list[tuple[int, int]]]:
    """The unanswered records still in the topic, and the findings whose record is gone."""
    from agents.stores.answer_audit import unanswered
    from streams import topics
    from streams.connections import connect
    from streams.partition_reader import PartitionReader

    conn = await connect(settings)
    try:
        found = await unanswered(conn, settings.app_id)
    finally:
        await conn.close()
    reader = PartitionReader(settings.kafka_bootstrap_servers)
    records: list[Unanswered] = []
    gone: list[tuple[int, int]] = []
    try:
        for partition, offset in found:
            beginning = (await reader.beginnings(topics.REQUESTED, [partition]))[partition]
            if offset < beginning:
                gone.append((partition, offset))
                continue
            async for batch in reader.read(topics.REQUESTED, partition, offset, offset + 1):
                for record in batch:
                    records.append(
                        Unanswered(
                            partition,
                            offset,
                            record.key,
                            record.value,
                            [(n, v) for n, v in record.headers if n != "migrator-replay-of"],
                        )
                    )
            if not records or records[-1].offset != offset:
                gone.append((partition, offset))
    except TimeoutError as exc:
        raise CliError(f"Kafka stopped answering while reading: {exc}") from None
    finally:
        await reader.stop()
    return records, gone


async def _publish(settings: Settings, records: list[Unanswered]) -> None:
    from aiokafka import AIOKafkaProducer

    from agents.core.answer_audit import replay_of_header
    from streams import topics
    from streams.connections import start_kafka_client

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True
    )
    await start_kafka_client(producer)
    try:
        sent = [
            await producer.send(
                topics.REQUESTED,
                record.value,
                key=record.key,
                partition=record.partition,
                headers=[*record.headers, replay_of_header(record.partition, record.offset)],
            )
            for record in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def replay_unanswered(args: argparse.Namespace) -> int:
    others = [
        flag
        for flag, given in (
            ("--ids/--file", args.ids or args.file),
            ("--code", args.code),
            ("--since/--until", args.since or args.until),
            ("--retryable-only", args.retryable_only),
            ("--plan-out/--from-plan", args.plan_out or args.from_plan),
        )
        if given
    ]
    if others:
        raise CliError(f"--unanswered replays the audit's findings as they are; drop {others[0]}")
    settings = Settings.from_env()
    records, gone = asyncio.run(_collect(settings))
    print(f"replay --unanswered: {len(records)} unanswered request record(s) to publish again")
    for record in records[: max(args.sample, 0)]:
        print("  " + record.describe())
    if gone:
        print(
            f"  WARNING: {len(gone)} unanswered record(s) are no longer in the topic "
            f"(retention): {', '.join(f'{p}:{o}' for p, o in gone[:10])}"
        )
    if not args.execute:
        print("nothing was published: add --execute to publish")
        return 0
    if not records:
        print("nothing to publish")
        return 0
    asyncio.run(_publish(settings, records))
    print(
        f"published {len(records)} record(s); the audit closes their findings once they are "
        "answered (migrator audit, GET audit)"
    )
    return 0


def add_option(parser: Any) -> None:
    parser.add_argument(
        "--unanswered",
        action="store_true",
        help="publish again exactly the request records the answer audit found unanswered "
        "(same key, value and partition)",
    )
