"""Service sub-commands of ``migrator`` (database, data, operations); the stack lives in cli.py.

Handlers build ``Settings`` from the environment, call into ``agents``/``streams`` and print.
Exit codes: 0 success, 1 a negative answer (validation found problems), 2 usage or dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.settings import Settings


def _db_init(args: argparse.Namespace) -> int:
    from agents.connections import connect
    from agents.schema import apply_schema

    async def run() -> int:
        conn = await connect(Settings.from_env())
        try:
            report = await apply_schema(conn)
        finally:
            await conn.close()
        for name in report.applied:
            print(f"applied  {name}")
        for name in report.already:
            print(f"present  {name}")
        return 0

    return asyncio.run(run())


def _seed_legacy(args: argparse.Namespace) -> int:
    from agents.connections import opened
    from agents.seed import SeedOptions, generate, write_rows
    from streams.operations import Progress

    options = SeedOptions(
        users=args.users,
        prefix=args.prefix,
        seed=args.seed,
        problem_ratio=args.with_problems,
        start=args.start,
    )

    async def run() -> int:
        progress = Progress(args.users, "seeding")
        async with opened(Settings.from_env()) as (pool, _):
            inserted = await write_rows(pool, generate(options), progress=progress.update)
        progress.update(inserted, force=True)
        print(f"inserted {inserted} legacy rows ({args.users - inserted} were already there)")
        return 0

    return asyncio.run(run())


def _validate(args: argparse.Namespace) -> int:
    from agents.connections import opened
    from agents.validation import validate_user

    async def run() -> int:
        async with opened(Settings.from_env()) as (pool, redis):
            report = await validate_user(pool, redis, args.user_id)
        if args.json:
            print(json.dumps(report.as_dict(), indent=2))
        else:
            print(f"{args.user_id}: {'OK' if report.ok else 'PROBLEMS FOUND'}")
            for check in report.checks:
                mark = "ok  " if check.ok else "FAIL"
                print(f"  {mark} {check.name}" + (f"  ({check.detail})" if check.detail else ""))
        return 0 if report.ok else 1

    return asyncio.run(run())


def _resync_redis(args: argparse.Namespace) -> int:
    from agents.connections import opened
    from agents.resync import prune_redis, resync_redis

    async def run() -> int:
        async with opened(Settings.from_env()) as (pool, redis):
            written = await resync_redis(pool, redis, page_size=args.page_size)
            removed = await prune_redis(pool, redis)
        print(f"rewrote {written} sessions in Redis from PostgreSQL; removed {removed} stale keys")
        return 0

    return asyncio.run(run())


def _read_ids(args: argparse.Namespace) -> list[str] | None:
    ids: list[str] = []
    for chunk in args.ids or []:
        ids += [part.strip() for part in chunk.split(",") if part.strip()]
    if args.file:
        handle = sys.stdin if args.file == "-" else Path(args.file).open(encoding="utf-8")
        with handle:
            ids += [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    return list(dict.fromkeys(ids)) if (args.ids or args.file) else None


def _enqueue(args: argparse.Namespace) -> int:
    from agents import pg_store
    from agents.connections import opened
    from streams.http_input import InputError, check_user_id
    from streams.operations import print_plan, publish
    from streams.requests_out import new_request

    settings = Settings.from_env()

    async def all_unmigrated() -> list[str]:
        async with opened(settings) as (pool, _):
            return await pg_store.unmigrated_user_ids(pool)

    ids = _read_ids(args)
    try:
        for user_id in ids or []:
            check_user_id(user_id)
    except InputError as error:
        print(f"migrator: {error.message}", file=sys.stderr)
        return 2
    user_ids = ids if ids is not None else asyncio.run(all_unmigrated())
    now = datetime.now(UTC)

    def requests() -> Iterator[Any]:
        for user_id in user_ids:
            yield new_request(
                user_id,
                action=args.action,
                dry_run=args.dry_run,
                requested_by=args.requested_by,
                reason=args.reason,
                now=now,
            )

    if not args.execute:
        sample = [request for _, request in zip(range(args.sample), requests(), strict=False)]
        print(f"enqueue {args.action}: {len(user_ids)} request(s) would be published")
        print_plan("enqueue", sample, sample=args.sample, out=print)
        return 0
    sent = asyncio.run(
        publish(settings, requests(), total=len(user_ids), rate_per_s=args.rate, label="enqueue")
    )
    print(f"published {sent} {args.action} request(s) to user-migration-requested")
    return 0


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _replay(args: argparse.Namespace) -> int:
    from streams import topics
    from streams.operations import print_plan, publish, read_topic
    from streams.replay_plan import ReplayFilter, plan_replay

    settings = Settings.from_env()
    selection = ReplayFilter(
        since=_parse_time(args.since) if args.since else None,
        until=_parse_time(args.until) if args.until else None,
        codes=frozenset(args.code or []),
        user_ids=frozenset(_read_ids(args) or []),
        retryable_only=args.retryable_only,
    )

    async def collect() -> list[bytes]:
        return [value async for value in read_topic(settings, topics.FAILED)]

    replays = plan_replay(asyncio.run(collect()), selection)
    if not args.execute:
        print_plan("replay", replays, sample=args.sample, out=print)
        return 0
    sent = asyncio.run(publish(settings, replays, total=len(replays), label="replay"))
    print(f"re-published {sent} request(s) with attempt + 1")
    return 0


def _stats(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    url = args.url or f"http://127.0.0.1:{settings.web_port}"
    try:
        with urllib.request.urlopen(f"{url}/api/v1/onboarding/migration/stats", timeout=10) as r:
            stats = json.load(r)
    except (urllib.error.URLError, OSError) as exc:
        print(f"migrator: no worker answers at {url} ({exc}); start one with `migrator worker`",
              file=sys.stderr)  # fmt: skip
        return 2
    print(json.dumps(stats, indent=2))
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from schemas.export import export_json_schemas, schema_directory

    directory = Path(args.dir) if args.dir else schema_directory()
    written = export_json_schemas(directory)
    for path in written:
        print(f"wrote {path}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    return run_worker(Settings.from_env(), loglevel=args.loglevel)


def register(commands: Any) -> None:
    """Add the service's sub-commands to the ``migrator`` parser."""
    worker = commands.add_parser("worker", help="run the stream processor (Faust worker)")
    worker.add_argument("-l", "--loglevel", default="info")
    worker.set_defaults(handler=_worker)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("init", help="apply sql/ddl idempotently").set_defaults(handler=_db_init)

    seed = commands.add_parser("seed-legacy", help="write synthetic legacy rows (COPY)")
    seed.add_argument("--users", type=int, required=True)
    seed.add_argument("--prefix", default="user-")
    seed.add_argument("--start", type=int, default=0, help="first user number")
    seed.add_argument("--seed", type=int, default=42, help="random seed (same seed, same rows)")
    seed.add_argument(
        "--with-problems", type=float, nargs="?", const=0.02, default=0.0, metavar="RATIO",
        help="also write broken rows (unknown steps, bad types…), default share 0.02",
    )  # fmt: skip
    seed.set_defaults(handler=_seed_legacy)

    validate = commands.add_parser("validate", help="check one migrated user end to end")
    validate.add_argument("user_id")
    validate.add_argument("--json", action="store_true")
    validate.set_defaults(handler=_validate)

    resync = commands.add_parser("resync-redis", help="rebuild Redis sessions from PostgreSQL")
    resync.add_argument("--page-size", type=int, default=1000)
    resync.set_defaults(handler=_resync_redis)

    for name, text in (
        ("enqueue", "publish requests for legacy users (all not yet migrated, or given ids)"),
        ("replay", "re-publish the requests of failed outcomes with attempt + 1"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--ids", action="append", help="comma-separated user ids")
        sub.add_argument("--file", help="file with one user id per line ('-' for stdin)")
        sub.add_argument("--execute", action="store_true", help="publish (default: plan only)")
        sub.add_argument("--sample", type=int, default=5, help="requests shown in the plan")
        if name == "enqueue":
            sub.add_argument("--action", choices=("migrate", "rollback"), default="migrate")
            sub.add_argument("--dry-run", action="store_true", help="set the request's dry_run")
            sub.add_argument("--rate", type=float, help="at most this many requests per second")
            sub.add_argument("--requested-by", default="migrator-cli")
            sub.add_argument("--reason")
            sub.set_defaults(handler=_enqueue)
        else:
            sub.add_argument("--since", help="ISO time: failures processed at or after")
            sub.add_argument("--until", help="ISO time: failures processed before")
            sub.add_argument("--code", action="append", help="error code (repeatable)")
            sub.add_argument("--retryable-only", action="store_true")
            sub.set_defaults(handler=_replay)

    stats = commands.add_parser("stats", help="the live counters, from a running worker")
    stats.add_argument("--url", help="worker base URL (default: this host's MIGRATOR_WEB_PORT)")
    stats.set_defaults(handler=_stats)

    schemas = commands.add_parser("schemas", help="write the events' JSON Schema files")
    schemas.add_argument("--dir", help="directory (default: schemas/json in the package)")
    schemas.set_defaults(handler=_schemas)
