"""Benchmark of the batch applier alone: 1,000-user batches over freshly seeded legacy users.

Prints users/s and rows/s (sessions + steps + manifests + audit + ledger rows written). Runs
against the servers named by DATABASE_URL and REDIS_URL, in a scratch database it drops after.
Not a test: figures depend on the machine; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from agents.batch_applier import BatchApplier
from agents.core.decide import Work
from agents.jobs.schema import apply_schema
from agents.jobs.seed import SeedOptions, generate, write_rows
from agents.stores.postgres_batch import PostgresStore
from agents.stores.redis_mirror import RedisMirror
from schemas.events import MigrationRequest
from streams.connections import connect, create_pool, create_redis
from streams.settings import Settings


async def main(users: int, batch: int) -> None:
    base = Settings.from_env()
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await connect(base)
    await admin.execute(f'CREATE DATABASE "{name}"')
    settings = base.model_copy(
        update={"database_url": base.database_url.rsplit("/", 1)[0] + "/" + name}
    )
    try:
        conn = await connect(settings)
        await apply_schema(conn)
        await conn.close()
        pool = await create_pool(settings, max_size=4)
        redis = create_redis(settings)
        started = time.perf_counter()
        await write_rows(pool, generate(SeedOptions(users=users, prefix="bench-", seed=3)))
        print(f"seeded {users} legacy users in {time.perf_counter() - started:.1f}s")
        core = BatchApplier(PostgresStore(pool), RedisMirror(redis))
        ids = [f"bench-{n:07d}" for n in range(users)]
        offset = 0
        started = time.perf_counter()
        for start in range(0, users, batch):
            works = []
            for user_id in ids[start : start + batch]:
                request = MigrationRequest(request_id=uuid.uuid4(), user_id=user_id)
                works.append(Work(request, 0, offset, None))
                offset += 1
            await core.apply(works)
        elapsed = time.perf_counter() - started
        tables = (
            "onboarding_sessions",
            "onboarding_steps",
            "business_context_manifests",
            "onboarding_migration_log",
            "migration_requests",
        )
        rows = sum([await pool.fetchval(f"SELECT count(*) FROM {table}") for table in tables])
        print(
            f"migrated {users} users in {elapsed:.1f}s: {users / elapsed:,.0f} users/s, "
            f"{rows / elapsed:,.0f} rows/s ({rows} rows), batches of {batch}"
        )
        await redis.aclose()
        await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    args = parser.parse_args()
    asyncio.run(main(args.users, args.batch))
