"""``migrator enqueue``: migrate requests for given users, or for everyone not yet migrated.

"Everyone" leaves out users who were rolled back and not migrated since (a cohort an operator
took back stays back); ``--include-rolled-back`` takes them too. Safe by default: a plan.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from agents.core.cohorts import cohort
from streams.cli.errors import CliError
from streams.cli.plans import Plan, add_plan_options, carry_out, saved_plan
from streams.cli.requests import add_request_options, add_run_option, request_plan
from streams.cli.selection import add_id_options, read_ids
from streams.settings import Settings

EXAMPLES = """examples:
  migrator enqueue                                  plan: everyone not yet migrated
  migrator enqueue --file cohort-1.csv --execute    migrate a cohort
  migrator enqueue --plan-out plan.jsonl            save the plan, request ids included
  migrator enqueue --from-plan plan.jsonl --execute publish exactly that plan
  migrator enqueue --ids u1,u2 --dry-run-requests --execute
  migrator enqueue --run canary --percent 1 --execute   a staged rollout: 1 % first,
  migrator enqueue --run wave-2 --percent 10 --execute  then 10 % (the 1 % is inside it)
"""


def _select(args: argparse.Namespace) -> Plan:
    ids = read_ids(args)
    if args.percent is not None and args.run is None:
        raise CliError("--percent starts a run: name it with --run NAME")
    if ids is not None:
        if args.include_rolled_back or args.include_failed:
            flag = "--include-rolled-back" if args.include_rolled_back else "--include-failed"
            raise CliError(f"{flag} applies to everyone, not to given ids")
        if args.percent is not None:
            raise CliError("--percent samples everyone not yet migrated, not given ids")
        return request_plan(
            "enqueue",
            "migrate",
            ids,
            args,
            [f"selected: {len(ids)} given"],
            selection={"kind": "ids", "given": len(ids)},
        )
    from agents.stores import postgres
    from streams.connections import opened

    async def everyone() -> postgres.Selection:
        async with opened(Settings.from_env()) as (pool, _):
            return await postgres.unmigrated_selection(
                pool,
                include_rolled_back=args.include_rolled_back,
                include_failed=args.include_failed,
            )

    users, held, failed = asyncio.run(everyone())
    summary = [f"selected: {len(users)} legacy users not yet migrated"]
    if held:
        summary.append(
            f"held out: {held} users rolled back and not migrated since "
            "(add --include-rolled-back to migrate them again)"
        )
    if failed:
        summary.append(
            f"held out: {failed} users whose migration failed for good (fix their data, then "
            "`migrator replay`; add --include-failed to send them again as they are)"
        )
    selection: dict[str, object] = {"kind": "everyone", "not_migrated": len(users)}
    if args.percent is not None:
        everyone_count = len(users)
        users = cohort(users, args.percent)
        summary.append(
            f"cohort: {args.percent:g} % of them by user-id hash: {len(users)} users "
            "(a user stays in the same cohort: a larger percent adds users, never swaps them)"
        )
        selection = {"kind": "percent", "percent": args.percent, "not_migrated": everyone_count}
    return request_plan("enqueue", "migrate", users, args, summary, selection=selection)


def _percent(value: str) -> float:
    try:
        percent = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 < percent <= 100:
        raise argparse.ArgumentTypeError(f"{value} is not a percent in (0, 100]")
    return percent


def _enqueue(args: argparse.Namespace) -> int:
    selected = bool(
        args.ids
        or args.file
        or args.include_rolled_back
        or args.include_failed
        or args.percent
        or args.run
    )
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
    parser.add_argument(
        "--include-failed",
        action="store_true",
        help="with everyone: also users whose migration failed for a reason only fixing their "
        "data cures (sent unchanged, they fail again)",
    )
    parser.add_argument(
        "--percent",
        type=_percent,
        metavar="P",
        help="with everyone and --run: only the P %% cohort (by a hash of the user id: the "
        "same users at every run, 1 %% inside 10 %% inside 100 %%)",
    )
    add_run_option(
        parser,
        "start (or add to) the named run: its requests carry it, `migrator runs` "
        "follows it, `migrator rollback --run NAME` takes it back",
    )
    add_request_options(parser)
    add_plan_options(parser)
    parser.set_defaults(handler=_enqueue)
