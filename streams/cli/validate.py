"""``migrator validate USER_ID``: run the named checks on one user and print them."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from streams.settings import Settings


def _validate(args: argparse.Namespace) -> int:
    from agents.jobs.validation import validate_user
    from streams.connections import opened

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


def register(commands: Any) -> None:
    parser = commands.add_parser("validate", help="check one migrated user end to end")
    parser.add_argument("user_id")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=_validate)
