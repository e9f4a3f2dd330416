"""``migrator enqueue``: migrate requests for given users, or for everyone not yet migrated.

"Everyone" leaves out users who were rolled back and not migrated since (a cohort an operator
took back stays back); ``--include-rolled-back`` takes them too. Safe by default: a plan.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from streams.cli.errors import CliError
from streams.cli.plans import Plan, add_plan_options, carry_out, saved_plan
from streams.cli.requests import add_request_options, request_plan
from streams.cli.selection import add_id_options, read_ids
from streams.settings import Settings

EXAMPLES = """examples:
  migrator enqueue                                  plan: everyone not yet migrated
  migrator enqueue --file cohort-1.csv --execute    migrate a cohort
  migrator enqueue --plan-out plan.jsonl            save the plan, request ids included
  migrator enqueue --from-plan plan.jsonl --execute publish exactly that plan
  migrator enqueue --ids u1,u2 --dry-run-requests --execute
"""


def _select(args: argparse.Namespace) -> Plan:
    ids = read_ids(args)
    if ids is not None:
        if args.include_rolled_back:
            raise CliError("--include-rolled-back applies to everyone, not to given ids")
        return request_plan("enqueue", "migrate", ids, args, [f"selected: {len(ids)} given"])
    from agents.stores import postgres
    from streams.connections import opened

    async def everyone() -> tuple[list[str], int]:
        async with opened(Settings.from_env()) as (pool, _):
            return await postgres.unmigrated_selection(
                pool, include_rolled_back=args.include_rolled_back
            )

    users, held = asyncio.run(everyone())
    summary = [f"selected: {len(users)} legacy users not yet migrated"]
    if held:
        summary.append(
            f"held out: {held} users rolled back and not migrated since "
            "(add --include-rolled-back to migrate them again)"
        )
    return request_plan("enqueue", "migrate", users, args, summary)


def _enqueue(args: argparse.Namespace) -> int:
    selected = bool(args.ids or args.file or args.include_rolled_back)
    plan = saved_plan(args, "enqueue", selected=selected) or _select(args)
    return carry_out(plan, args, rate_per_s=args.rate)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "enqueue",
        help="publish migrate requests: given users, or everyone not yet migrated",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_id_options(parser, what="the users (default: everyone not yet migrated)")
    parser.add_argument(
        "--include-rolled-back",
        action="store_true",
        help="with everyone: also users who were rolled back and not migrated since",
    )
    add_request_options(parser)
    add_plan_options(parser)
    parser.set_defaults(handler=_enqueue)
