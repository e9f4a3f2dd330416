"""``migrator validate USER_ID``: which state a user is in, and the named checks of that state.

States: migrated, rolled_back, never_migrated. Exit 0 when every check holds, 1 when one fails,
2 for an unknown user or a bad id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from streams.cli.errors import CliError
from streams.cli.selection import check_id
from streams.settings import Settings

EXAMPLES = """examples:
  migrator validate user-0000042
  migrator validate user-0000042 --json
"""

_STATE = {"migrated": "migrated", "rolled_back": "rolled back", "never_migrated": "never migrated"}


def _validate(args: argparse.Namespace) -> int:
    from agents.jobs.validation import UnknownUser, validate_user
    from agents.stores.postgres import UserBusy
    from streams.connections import opened

    user_id = check_id(args.user_id, "USER_ID")

    async def run() -> int:
        async with opened(Settings.from_env()) as (pool, redis):
            report = await validate_user(pool, redis, user_id)
        if args.json:
            print(json.dumps(report.as_dict(), indent=2))
        else:
            verdict = "OK" if report.ok else "PROBLEMS FOUND"
            print(f"{user_id}: {_STATE[report.state]}, {verdict}")
            for check in report.checks:
                mark = "ok  " if check.ok else "FAIL"
                print(f"  {mark} {check.name}" + (f"  ({check.detail})" if check.detail else ""))
        return 0 if report.ok else 1

    try:
        return asyncio.run(run())
    except (UnknownUser, UserBusy) as exc:
        raise CliError(str(exc)) from None


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "validate",
        help="check one user end to end: migrated, rolled back or never migrated",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("user_id", metavar="USER_ID", help="the user to check")
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    parser.set_defaults(handler=_validate)
