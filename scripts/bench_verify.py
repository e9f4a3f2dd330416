"""Benchmark and proof of ``migrator verify`` on a large population (issue 22). Not a test.

Against the servers named by DATABASE_URL and REDIS_URL (``eval "$(migrator stack up)"``), in a
scratch database (``bench_verify`` unless ``--database``) and Redis database 15, which it empties:

1. seeds ``--users`` legacy users and migrates them with the service's batch applier (no Kafka);
   skipped when the database already holds that many sessions (``--keep`` left it there);
2. ``migrator verify`` on the clean population: its printed throughput is the figure;
3. plants ``--corruptions`` corruptions at random across PostgreSQL and Redis
   (tests/support/corruption.py), verifies again: every corrupted user must be found, each with
   the kind of finding its corruption calls for;
4. ``verify --rerun REPORT --repair --execute``, then ``verify --rerun REPORT``: what is left must
   be exactly the drift and the unrepairable ones.

Prints each step's figures and a last JSON line. Exit 1 if a corruption was missed or a repairable
one is left. The database is dropped afterwards unless ``--keep``; ``--prepare-only`` seeds and
migrates (minutes for a million users) and keeps it, so that the measurement runs apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.corruption import plant_random  # noqa: E402

from agents.batch_applier import BatchApplier  # noqa: E402
from agents.core.decide import Work  # noqa: E402
from agents.jobs.schema import apply_schema  # noqa: E402
from agents.jobs.seed import SeedOptions, generate, write_rows  # noqa: E402
from agents.stores.postgres_batch import PostgresStore  # noqa: E402
from agents.stores.redis_mirror import RedisMirror  # noqa: E402
from schemas.events import MigrationRequest  # noqa: E402
from streams.connections import connect, create_pool, create_redis  # noqa: E402
from streams.settings import Settings  # noqa: E402

BATCH = 2_000


def _settings(database: str) -> Settings:
    base = Settings.from_env()
    redis_url = re.sub(r"/\d+$", "", base.redis_url) + "/15"
    return base.model_copy(
        update={
            "database_url": base.database_url.rsplit("/", 1)[0] + "/" + database,
            "redis_url": redis_url,
        }
    )


async def prepare(database: str, users: int) -> None:
    base = Settings.from_env()
    admin = await connect(base)
    exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
    if not exists:
        await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    settings = _settings(database)
    conn = await connect(settings)
    await apply_schema(conn)
    sessions = int(await conn.fetchval("SELECT count(*) FROM onboarding_sessions"))
    await conn.close()
    if sessions == users:
        print(f"reusing {database}: {users} sessions there already")
        return
    if sessions:
        raise SystemExit(f"{database} holds {sessions} sessions, not {users}: drop it first")
    pool = await create_pool(settings, max_size=4)
    redis = create_redis(settings)
    await redis.flushdb()
    started = time.perf_counter()
    await write_rows(pool, generate(SeedOptions(users=users, prefix="user-", seed=42)))
    print(f"seeded {users} legacy users in {time.perf_counter() - started:.0f}s", flush=True)
    core = BatchApplier(PostgresStore(pool), RedisMirror(redis), app_id="bench-verify")
    started = time.perf_counter()
    for first in range(0, users, BATCH):
        works = [
            Work(MigrationRequest(request_id=uuid.uuid4(), user_id=f"user-{n:07d}"), 0, n, None)
            for n in range(first, min(first + BATCH, users))
        ]
        await core.apply(works)
        if first % 100_000 == 0 and first:
            rate = first / (time.perf_counter() - started)
            print(f"  migrated {first} ({rate:,.0f}/s)", flush=True)
    print(f"migrated {users} users in {time.perf_counter() - started:.0f}s", flush=True)
    await pool.execute("VACUUM ANALYZE")
    await redis.aclose()
    await pool.close()


def migrator(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    settings = _settings(database)
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode == 2:
        raise SystemExit(f"migrator {' '.join(args)}: {result.stderr.strip()}")
    return result


def rate_of(output: str) -> float:
    found = re.search(r"in ([\d.]+)s: ([\d,]+) users/s", output)
    assert found, output
    return float(found.group(2).replace(",", ""))


async def plant(database: str, count: int, seed: int) -> dict[str, str]:
    settings = _settings(database)
    pool = await create_pool(settings, max_size=2)
    redis = create_redis(settings)
    planted = await plant_random(pool, redis, count, seed=seed)
    await redis.aclose()
    await pool.close()
    return {user: corruption.expects for user, corruption in planted.items()}


async def drop(database: str) -> None:
    admin = await connect(Settings.from_env())
    await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    await admin.close()
    redis = create_redis(_settings(database))
    await redis.flushdb()
    await redis.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--corruptions", type=int, default=100)
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--database", default="bench_verify")
    parser.add_argument("--keep", action="store_true", help="keep the database and Redis data")
    parser.add_argument(
        "--prepare-only", action="store_true", help="seed and migrate, keep, measure nothing"
    )
    args = parser.parse_args()
    asyncio.run(prepare(args.database, args.users))
    if args.prepare_only:
        return 0
    out = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        clean = migrator(args.database, "verify")
        print(clean.stdout.strip())
        if clean.returncode != 0:
            print("the clean population has mismatches: see above", file=sys.stderr)
            return 1
        expected = asyncio.run(plant(args.database, args.corruptions, args.seed))
        print(f"planted {len(expected)} corruptions: {dict(Counter(expected.values()))}")
        found_path = out / "found.json"
        found = migrator(args.database, "verify", "--json", str(found_path))
        print(found.stdout.strip())
        report: dict[str, Any] = json.loads(found_path.read_text())
        kinds = {u["user_id"]: {f["kind"] for f in u["findings"]} for u in report["users"]}
        caught = [u for u, kind in expected.items() if kind in kinds.get(u, set())]
        extra = sorted(set(kinds) - set(expected))
        fixed = migrator(
            args.database, "verify", "--rerun", str(found_path), "--repair", "--execute"
        )
        print(fixed.stdout.strip())
        proof_path = out / "proof.json"
        proof = migrator(
            args.database, "verify", "--rerun", str(found_path), "--json", str(proof_path)
        )
        print(proof.stdout.strip())
        left = {u["user_id"] for u in json.loads(proof_path.read_text())["users"]}
        operator = {u for u, kind in expected.items() if kind in ("drift", "unrepairable")}
        summary = {
            "users": args.users,
            "verify_users_per_s": rate_of(clean.stdout),
            "verify_with_corruptions_users_per_s": rate_of(found.stdout),
            "planted": len(expected),
            "found": len(caught),
            "false_positives": len(extra),
            "repairable": len(expected) - len(operator),
            "left_after_repair": len(left),
            "left_are_drift_or_unrepairable": left == operator,
        }
        print(json.dumps(summary))
        return 0 if len(caught) == len(expected) and not extra and left == operator else 1
    finally:
        if not args.keep:
            asyncio.run(drop(args.database))


if __name__ == "__main__":
    sys.exit(main())
