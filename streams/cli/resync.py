"""``migrator resync-redis``: make the Redis mirror equal PostgreSQL, all of it or some users.

The plan (default) counts the sessions that would be rewritten and the stale keys (no session
behind them in PostgreSQL) that would be removed, with a sample; ``--execute`` does it with a
progress bar. It is safe while workers migrate: every page locks its users' legacy rows first.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from streams.cli.selection import add_id_options, read_ids
from streams.settings import Settings

EXAMPLES = """examples:
  migrator resync-redis                       plan: how many sessions, how many stale keys
  migrator resync-redis --execute             rebuild the whole mirror, prune stale keys
  migrator resync-redis --ids u1,u2 --execute rewrite these users only
"""


def _resync_redis(args: argparse.Namespace) -> int:
    from agents.jobs.resync import prune_redis, resync_redis, resync_users, stale_keys
    from agents.stores import postgres
    from streams.cli.output import Progress
    from streams.connections import opened

    ids = read_ids(args)

    async def run() -> int:
        async with opened(Settings.from_env()) as (pool, redis):
            await redis.ping()  # a Redis that is down is said before any work
            if ids is not None:
                with_session = await postgres.users_with_sessions(pool, ids)
                print(
                    f"resync-redis: {len(ids)} user(s) given; {len(with_session)} hold a session "
                    f"to write, {len(ids) - len(with_session)} none (their keys are removed)"
                )
                if not args.execute:
                    print("nothing was changed: add --execute to resync them")
                    return 0
                written = await resync_users(pool, redis, ids)
                print(f"rewrote {written} session(s) in Redis from PostgreSQL")
                return 0
            sessions = await postgres.session_count(pool)
            stale = await stale_keys(pool, redis)
            print(f"resync-redis: {sessions} session(s) to rewrite from PostgreSQL")
            print(f"  {len(stale)} stale key(s) to remove (no session behind them in PostgreSQL)")
            for key in stale[: args.sample]:
                print(f"    {key}")
            if not args.execute:
                print("nothing was changed: add --execute to resync")
                return 0
            progress = Progress(sessions, "resync-redis")
            written = await resync_redis(
                pool, redis, page_size=args.page_size, progress=progress.update
            )
            progress.update(written, force=True)
            removed = await prune_redis(pool, redis)
        print(
            f"rewrote {written} session(s) in Redis from PostgreSQL; removed {removed} stale key(s)"
        )
        return 0

    return asyncio.run(run())


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "resync-redis",
        help="make the Redis mirror equal PostgreSQL (plan first; all, or given users)",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_id_options(parser, what="only these users (default: every session)")
    parser.add_argument("--execute", action="store_true", help="resync (default: plan only)")
    parser.add_argument(
        "--sample", type=int, default=5, metavar="N", help="stale keys shown in the plan (5)"
    )
    parser.add_argument(
        "--page-size", type=int, default=1000, metavar="N", help="users per transaction (1000)"
    )
    parser.set_defaults(handler=_resync_redis)
