"""``migrator enqueue``: requests for given users or every one not yet migrated.

It can move a whole population, so it only prints its plan unless the operator says
``--execute``; the plan and the execution come from the same selection.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from schemas.events import MigrationRequest
from streams.cli.output import add_id_options, print_plan, read_ids
from streams.settings import Settings


def _enqueue(args: argparse.Namespace) -> int:
    from agents.stores import postgres
    from streams.cli.kafka_io import publish
    from streams.connections import opened
    from streams.requests_out import new_request
    from streams.web.inputs import InputError, check_user_id

    settings = Settings.from_env()

    async def all_unmigrated() -> list[str]:
        async with opened(settings) as (pool, _):
            return await postgres.unmigrated_user_ids(pool)

    ids = read_ids(args)
    try:
        for user_id in ids or []:
            check_user_id(user_id)
    except InputError as error:
        print(f"migrator: {error.message}", file=sys.stderr)
        return 2
    user_ids = ids if ids is not None else asyncio.run(all_unmigrated())
    now = datetime.now(UTC)

    def requests() -> Iterator[MigrationRequest]:
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


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "enqueue", help="publish requests for legacy users (all not yet migrated, or given ids)"
    )
    add_id_options(parser)
    parser.add_argument("--execute", action="store_true", help="publish (default: plan only)")
    parser.add_argument("--sample", type=int, default=5, help="requests shown in the plan")
    parser.add_argument("--action", choices=("migrate", "rollback"), default="migrate")
    parser.add_argument("--dry-run", action="store_true", help="set the request's dry_run")
    parser.add_argument("--rate", type=float, help="at most this many requests per second")
    parser.add_argument("--requested-by", default="migrator-cli")
    parser.add_argument("--reason")
    parser.set_defaults(handler=_enqueue)
