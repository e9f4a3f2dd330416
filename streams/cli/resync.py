"""``migrator resync-redis``: rebuild the Redis mirror from PostgreSQL and prune stale keys."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from streams.settings import Settings


def _resync_redis(args: argparse.Namespace) -> int:
    from agents.jobs.resync import prune_redis, resync_redis
    from streams.connections import opened

    async def run() -> int:
        async with opened(Settings.from_env()) as (pool, redis):
            written = await resync_redis(pool, redis, page_size=args.page_size)
            removed = await prune_redis(pool, redis)
        print(f"rewrote {written} sessions in Redis from PostgreSQL; removed {removed} stale keys")
        return 0

    return asyncio.run(run())


def register(commands: Any) -> None:
    parser = commands.add_parser("resync-redis", help="rebuild Redis sessions from PostgreSQL")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.set_defaults(handler=_resync_redis)
