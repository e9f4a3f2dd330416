"""``migrator worker``: check the dependencies, make sure the topics exist, run the Faust worker.

Each missing server is reported in one line before Faust starts, rather than as a stack trace
from deep inside a client library.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from pathlib import Path
from typing import Any

from streams.connections import DependencyUnavailable, connect, create_redis, unreachable
from streams.logs import logging_config
from streams.settings import Settings
from streams.topic_admin import TopicMismatch, ensure_topics


async def check_dependencies(settings: Settings) -> None:
    """Raise ``DependencyUnavailable`` with one line naming what is missing."""
    conn = await connect(settings)
    await conn.close()
    client = create_redis(settings)
    try:
        await client.ping()
    except Exception as exc:
        raise DependencyUnavailable(unreachable("Redis", settings.redis_url, exc)) from exc
    finally:
        await client.aclose()
    await ensure_topics(settings)


def use_event_loop(name: str) -> None:
    """Make the worker's loop uvloop's (or asyncio's own): the loop the worker creates next.

    Much of a worker's time is the event loop's own (sockets to Kafka, PostgreSQL and Redis,
    callbacks, timers); uvloop does that in C: about +6 % users/s and -8 % worker CPU per
    1,000 users on the flood here, quiet (+15 % and -12 % with other jobs on the machine).
    """
    if name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())


# The youngest generation is collected once this many more container objects were made than
# freed (CPython's default: 700). See ``settle_garbage_collector``.
GC_YOUNG_THRESHOLD = 50_000


def settle_garbage_collector() -> None:
    """Once the worker has started: what exists now (modules, classes, the app, its clients)
    lives as long as the process, so it is frozen out of the collector's sight; and the young
    generation is collected less often.

    Why: a batch's objects live across its database transaction (tens of ms), long enough to
    outlive CPython's default young collections (every 700 net allocations, about every 0.5 ms
    in a flood). So they were promoted to the oldest generation, which filled fast and was
    collected in full, every 120,000 startup objects scanned each time, about 62 ms a pass:
    on a 30,000-user flood the collector took 56 µs per user (18 full passes), a fifth of the
    worker's CPU, and stopped the event loop for each pass. Frozen, with the young generation
    collected every 50,000 net allocations: 1-1.4 µs per user, no full pass (2,000: 25 µs;
    10,000: 11-12 µs; the same floods, two each).
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)


def run_worker(settings: Settings, *, loglevel: str | None = None) -> int:
    try:
        asyncio.run(check_dependencies(settings))
    except (DependencyUnavailable, TopicMismatch) as exc:
        print(f"migrator: {exc}", file=sys.stderr)
        return 2
    use_event_loop(settings.event_loop)
    import faust

    from streams.app import create_app

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)

    context = create_app(settings)
    level = loglevel or settings.log_level

    class Worker(faust.Worker):
        async def on_startup_finished(self, *args: Any, **kwargs: Any) -> None:
            await super().on_startup_finished(*args, **kwargs)
            settle_garbage_collector()

    worker = Worker(
        context.app, loglevel=level, logging_config=logging_config(level, settings.log_format)
    )
    worker.execute_from_commandline()
    return 0
