"""Run events on real servers, the cases the e2e test cannot time: a leader that published but
died before PostgreSQL heard of it, and one that died mid-transaction. The next leader's
producer fences it, finds on the topic what it published, and publishes only the rest: every
event once. And a hook's claim: once per event, ever; one left running is marked interrupted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from agents.core import run_events
from agents.core.control_state import ControlState
from agents.stores import run_events as store
from streams import topics
from streams.cli.kafka_io import read_records
from streams.run_event_publisher import RunEventPublisher
from streams.settings import Settings
from streams.topic_admin import ensure_topics

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _events(unique: str, count: int) -> list[Any]:
    made = [
        run_events.from_control(
            n,
            "pause",
            {"paused": n % 2 == 0, "by": f"e2e-{unique}", "at": NOW.isoformat()},
            in_progress=[],
            fallback_at=NOW,
        )
        for n in range(count)
    ]
    # Unique on the shared topic: this test's ids only.
    return [e.model_copy(update={"event_id": f"{unique}-{e.event_id}"}) for e in made if e]


async def _producer(settings: Settings, transactional_id: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        transactional_id=transactional_id,
        enable_idempotence=True,
    )
    await producer.start()
    return producer


async def test_a_new_leader_publishes_what_the_dead_one_did_not_and_nothing_twice(
    settings: Settings, pool: asyncpg.Pool, unique: str
) -> None:
    app_settings = settings.model_copy(update={"app_id": f"events-{unique}"})
    await ensure_topics(app_settings)
    app_id = app_settings.app_id
    published, unmarked, in_flight, waiting = _events(unique, 4)
    async with pool.acquire() as conn:
        await store.record(
            conn, app_id, [published, unmarked, in_flight, waiting], now=NOW, hooks=False
        )
    await store.mark_published(pool, app_id, [published.event_id], now=NOW)

    # The old leader: `unmarked` committed on Kafka (then it died before marking it),
    # `in_flight` sent in a transaction it never committed.
    old = await _producer(app_settings, f"{app_id}-run-events")
    for batch, commit in (([published, unmarked], True), ([in_flight], False)):
        await old.begin_transaction()
        for event in batch:
            await old.send_and_wait(
                topics.RUN_EVENTS,
                json.dumps(event.model_dump(mode="json")).encode(),
                key=event.event_id.encode(),
            )
        if commit:
            await old.commit_transaction()

    publisher = RunEventPublisher(
        app_settings,
        SimpleNamespace(pool=pool),  # type: ignore[arg-type]
        SimpleNamespace(current=ControlState()),  # type: ignore[arg-type]
    )
    new = await _producer(app_settings, publisher.transactional_id)  # fences the old one
    try:
        async with pool.acquire() as conn:
            await publisher._reconcile(conn)
            await publisher._publish(conn, new)
    finally:
        await new.stop()
        await old.stop()

    keys = [
        r.key.decode()
        async for r in read_records(app_settings, topics.RUN_EVENTS, idle_timeout_s=0.5)
        if r.key is not None and r.key.decode().startswith(f"{unique}-")
    ]
    assert sorted(keys) == sorted(e.event_id for e in (published, unmarked, in_flight, waiting)), (
        keys
    )
    assert await store.unpublished(pool, app_id) == []
    assert publisher.published == 2  # in_flight and waiting: unmarked was found on the topic


async def test_a_hook_is_claimed_once_and_a_stale_claim_is_interrupted(
    pool: asyncpg.Pool, unique: str
) -> None:
    app_id = f"hooks-{unique}"
    first, second = _events(unique, 2)
    async with pool.acquire() as conn:
        await store.record(conn, app_id, [first, second], now=NOW, hooks=True)
        await store.record(conn, app_id, [first], now=NOW, hooks=True)  # derived again: once
    assert await store.hooks_due(pool, app_id) == []  # not published yet
    await store.mark_published(pool, app_id, [first.event_id, second.event_id], now=NOW)
    assert await store.hooks_due(pool, app_id) == [first.event_id, second.event_id]

    claimed = await store.claim_hook(pool, app_id, first.event_id, now=NOW, worker="a")
    assert claimed is not None and claimed.event_id == first.event_id
    assert await store.claim_hook(pool, app_id, first.event_id, now=NOW, worker="b") is None
    await store.hook_done(pool, app_id, first.event_id, state="done", detail="exit 0", now=NOW)

    assert await store.claim_hook(pool, app_id, second.event_id, now=NOW, worker="a")
    stale = await store.hooks_interrupted(
        pool, app_id, claimed_before=NOW + timedelta(minutes=5), now=NOW
    )
    assert stale == [(second.event_id, "resumed")]
    assert await store.hooks_due(pool, app_id) == []
    assert await store.claim_hook(pool, app_id, second.event_id, now=NOW, worker="b") is None
