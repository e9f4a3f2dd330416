"""``migrator rollback``: rollback requests for given users, each restored to its exact legacy row.

Safe by default: the plan says how many of the users hold a migrated session now (the others
will answer ``failed``/``not_migrated``) and publishes nothing without ``--execute``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from streams.cli.errors import CliError
from streams.cli.plans import add_plan_options, carry_out, saved_plan
from streams.cli.requests import add_request_options, add_run_option, request_plan
from streams.cli.selection import add_id_options, read_ids
from streams.settings import Settings

EXAMPLES = """examples:
  migrator rollback --file cohort-1.csv                 plan: who would be rolled back
  migrator rollback --file cohort-1.csv --execute       roll the cohort back
  migrator rollback --ids u1 --dry-run-requests --execute
                                                        verify a rollback without doing it
  migrator rollback --from-plan rb.jsonl --execute      publish exactly a saved plan
  migrator rollback --run canary --execute              take back what a run migrated
"""


def _rollback(args: argparse.Namespace) -> int:
    saved = saved_plan(args, "rollback", selected=bool(args.ids or args.file or args.run))
    if saved is not None:
        return carry_out(saved, args, rate_per_s=args.rate)
    if args.run is not None:
        return _rollback_run(args)
    ids = read_ids(args)
    if not ids:
        raise CliError("say whom to roll back: --ids, --file, --run or --from-plan")
    from agents.stores import postgres
    from streams.connections import opened

    async def migrated_now() -> set[str]:
        async with opened(Settings.from_env()) as (pool, _):
            return await postgres.users_with_sessions(pool, ids)

    with_session = asyncio.run(migrated_now())
    summary = [f"selected: {len(ids)} given; {len(with_session)} hold a migrated session now"]
    if len(with_session) < len(ids):
        summary.append(
            f"  {len(ids) - len(with_session)} hold none and will answer failed/not_migrated"
        )
    plan = request_plan("rollback", "rollback", ids, args, summary)
    return carry_out(plan, args, rate_per_s=args.rate)


def _rollback_run(args: argparse.Namespace) -> int:
    """Exactly what the run migrated and still holds a session it created (plan first)."""
    if args.ids or args.file:
        raise CliError("--run selects the run's users: no --ids/--file beside it")
    from agents.stores.runs import run_sessions
    from streams.connections import opened

    async def selected() -> list[str] | None:
        async with opened(Settings.from_env()) as (pool, _):
            return await run_sessions(pool, args.run)

    users = asyncio.run(selected())
    if users is None:
        raise CliError(f"no run named {args.run!r}: see `migrator runs`")
    summary = [
        f"selected: {len(users)} users holding a session that run {args.run} created "
        "(users migrated before the run, or rolled back since, are not selected)"
    ]
    plan = request_plan(
        "rollback", "rollback", users, args, summary, selection={"kind": "run", "run": args.run}
    )
    return carry_out(plan, args, rate_per_s=args.rate)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "rollback",
        help="publish rollback requests for given users (exact legacy rows restored)",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_id_options(parser, what="the users to roll back")
    add_run_option(
        parser,
        "roll back exactly what the run migrated (users holding a session one of its "
        "requests created); the rollback requests carry the run",
    )
    add_request_options(parser)
    add_plan_options(parser)
    parser.set_defaults(handler=_rollback)
