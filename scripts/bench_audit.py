"""``scripts/bench --audit``: ``migrator audit`` over a large topic: seconds per million records
and peak memory, at two sizes (memory must not grow with the topic).

On a fresh stack under .stack/bench-audit it publishes N request records and, for each, one
``migrated`` answer naming it (origin headers) on the outcome topic, as a worker would, and
commits the group's offset at the end of the request topic. No worker runs: the figures are
the verifier's alone (reading both topics read_committed, pairing, and holding every answer
against PostgreSQL, where these users do not exist, so each is a disagreement: the heaviest
path). Then it runs ``migrator audit --json --no-record`` as a separate process and reports
its wall time, its own seconds per million records and its peak RSS (which the audit reports
itself). Writes JSON to .stack/bench-audit/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench_e2e import MIGRATOR, BenchError, fresh_stack, stack_down  # noqa: E402

STACK = ROOT / ".stack" / "bench-audit"
APP_ID = "bench-audit"


async def publish(env: dict[str, str], count: int, offset_base: dict[int, int]) -> None:
    """``count`` requests round-robin over the partitions and one answer each; the group's
    offsets committed at the requests' ends."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    from streams import topics
    from streams.codecs import Origin, origin_headers
    from streams.settings import Settings
    from streams.topic_admin import ensure_topics

    settings = Settings.from_env(env)
    await ensure_topics(settings)
    partitions = settings.topic_partitions
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        linger_ms=20,
        max_batch_size=1024 * 1024,
        acks=1,
    )
    await producer.start()
    try:
        next_offset = dict(offset_base)
        pending = []
        for n in range(count):
            partition = n % partitions
            user = f"bench-{n:08d}"
            request_id = str(uuid.uuid4())
            request = {"schema_version": 1, "request_id": request_id, "user_id": user}
            offset = next_offset.get(partition, 0)
            next_offset[partition] = offset + 1
            answer = {
                "schema_version": 1,
                "event_id": str(uuid.uuid4()),
                "request_id": request_id,
                "user_id": user,
                "action": "migrate",
                "outcome": "migrated",
                "processed_at": datetime.now(UTC).isoformat(),
            }
            origin = Origin(topics.REQUESTED, partition, offset, None)
            pending.append(
                await producer.send(
                    topics.REQUESTED,
                    json.dumps(request).encode(),
                    key=user.encode(),
                    partition=partition,
                )
            )
            pending.append(
                await producer.send(
                    topics.MIGRATED,
                    json.dumps(answer).encode(),
                    key=user.encode(),
                    partition=partition,
                    headers=origin_headers(origin),
                )
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=APP_ID,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topics.REQUESTED, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: OffsetAndMetadata(ends[tp], "") for tp in tps})
        offset_base.update({tp.partition: ends[tp] for tp in tps})
    finally:
        await consumer.stop()


def audit(env: dict[str, str]) -> dict[str, object]:
    began = time.monotonic()
    done = subprocess.run(
        [*MIGRATOR, "audit", "--json", "--no-record"],
        env={**env, "MIGRATOR_APP_ID": APP_ID},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    wall = time.monotonic() - began
    if done.returncode not in (0, 1):
        raise BenchError(f"migrator audit failed: {done.stderr.strip()[-300:]}")
    report = json.loads(done.stdout)
    return {
        "request_records": report["request_records"],
        "answers": report["answers"],
        "wall_s": round(wall, 1),
        "seconds_per_million_records": report["seconds_per_million_records"],
        "peak_rss_mib": report["peak_rss_mib"],
        "disagreeing": report["disagreeing_with_postgres"]["count"],
        "unanswered": report["unanswered"]["count"],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--records",
        default="100000,1000000",
        help="topic sizes to audit, comma-separated (each adds to the previous)",
    )
    args = parser.parse_args(argv)
    sizes = sorted(int(x) for x in args.records.split(","))
    env = fresh_stack(STACK)
    results = []
    try:
        published = 0
        bases: dict[int, int] = {}
        for size in sizes:
            print(f"bench --audit: publishing up to {size:,} requests and answers", flush=True)
            asyncio.run(publish(env, size - published, bases))
            published = size
            figures = audit(env)
            results.append(figures)
            print(
                f"  {figures['request_records']:,} records + {figures['answers']:,} answers: "
                f"{figures['wall_s']} s wall, {figures['seconds_per_million_records']} s per "
                f"million records read, peak RSS {figures['peak_rss_mib']} MiB",
                flush=True,
            )
    finally:
        stack_down(STACK)
    out = STACK / f"bench-audit-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"bench --audit: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
