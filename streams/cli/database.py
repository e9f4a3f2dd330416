"""``migrator db init`` and ``migrator seed-legacy``: the schema and synthetic legacy rows."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from streams.settings import Settings


def _db_init(args: argparse.Namespace) -> int:
    from agents.jobs.schema import apply_schema
    from streams.connections import connect

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
    from agents.jobs.seed import SeedOptions, generate, write_rows
    from streams.cli.output import Progress
    from streams.connections import opened

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


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return number


def _ratio(value: str) -> float:
    try:
        ratio = float(value)
    except ValueError:
        ratio = -1.0
    if not 0 <= ratio <= 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a share between 0 and 1 (0.02: 2 %)")
    return ratio


def register(commands: Any) -> None:
    db = commands.add_parser(
        "db",
        help="database schema",
        description="The service's tables in PostgreSQL.",
        epilog="example:\n  migrator db init",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    db_commands = db.add_subparsers(
        dest="db_command", required=True, metavar="SUBCOMMAND", help="what to do"
    )
    init = db_commands.add_parser(
        "init",
        help="apply sql/ddl idempotently (each file once, recorded with its hash)",
        description="Apply the numbered DDL files not applied yet; refuse if an applied file "
        "changed since (a shipped file is amended by a new one).",
        epilog="example:\n  migrator db init",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.set_defaults(handler=_db_init)

    seed = commands.add_parser(
        "seed-legacy",
        help="write synthetic legacy rows (COPY), for demos and benchmarks",
        description="Write synthetic legacy users; rows already there are left alone, so "
        "running it twice adds nothing.",
        epilog="examples:\n  migrator seed-legacy --users 100000\n"
        "  migrator seed-legacy --users 1000 --prefix cohort-a- --with-problems",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    seed.add_argument("--users", type=_positive, required=True, help="how many users")
    seed.add_argument("--prefix", default="user-", help="user id prefix (user-)")
    seed.add_argument("--start", type=int, default=0, help="first user number (0)")
    seed.add_argument("--seed", type=int, default=42, help="random seed (same seed, same rows)")
    seed.add_argument(
        "--with-problems",
        type=_ratio,
        nargs="?",
        const=0.02,
        default=0.0,
        metavar="RATIO",
        help="also write broken rows (unknown steps, bad types…), default share 0.02",
    )
    seed.set_defaults(handler=_seed_legacy)
