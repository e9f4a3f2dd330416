"""The faults of issue 21 for the fault run (``faults.run_faults``): deploys and cluster changes.

- ``worker_restart``: SIGTERM a worker and start it again at once, as a deploy does. With
  static membership (``RunConfig.static_members``) it rejoins under its instance id within the
  session timeout: the note says whether the group's generation stayed the same.
- ``broker_leader_kill``: SIGKILL the broker that leads most request partitions; it stays away
  ``BROKER_DOWN_S``, then comes back. ``broker_coordinator_kill``: the same for the broker that
  coordinates partition 0's transactional id. ``broker_restart``: SIGTERM the next broker (a
  rolling restart: three in a row) and start it again, then wait until every partition has all
  its replicas in sync, as a careful deploy does before the next broker.
- ``scale_out`` / ``scale_in``: workers up to ``SCALE_TO`` and back to one; the note gives how
  the partitions were spread.

Recovery is measured like the other faults (``_Run._measure``: every request partition answers
a record published after the reference moment); the reference is the fault itself for broker
faults (the cluster must go on without the broker) and scaling, and the new process's start for
a worker restart (the time the old one took to stop is ``down``).
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient, CoordinationType
from harness import kill_server, restart_servers

from streams import topics
from streams.stack.launcher import broker_name

if TYPE_CHECKING:
    from faults import Recovery, Slot, _Run

BROKER_DOWN_S = 10.0
# Outcomes are still watched this long after a fault's recovery, for its longest pause.
PAUSE_WINDOW_TAIL_S = 3.0
SCALE_TO = 3
# Faust's line on every assignment it takes in (faust.app.base, _on_partitions_assigned).
_SYNCED = re.compile(r"generation id (\d+) app consumers id")


async def inject(run: _Run, fault: str, number: int) -> Recovery:
    from faults import RECOVERY_GOAL_S, Recovery, _round

    fault_at = time.monotonic()
    backlog = len(run._backlog(fault_at))
    reference: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    measuring = asyncio.ensure_future(run._measure(fault_at, reference))
    handler = _HANDLERS[fault]
    target, down_s = await handler(run, number, reference)
    if not reference.done():
        reference.set_result(fault_at)
    flow_at, drained_at = await measuring
    ref = reference.result()
    flow = None if flow_at is None else max(0.0, flow_at - ref)
    drained = None if drained_at is None else max(0.0, drained_at - ref)
    recovery = None if flow is None or drained is None else max(flow, drained)
    result = Recovery(
        fault,
        target,
        round(fault_at - run.t0, 1),
        round(down_s, 1),
        _round(flow),
        _round(drained),
        _round(recovery),
        RECOVERY_GOAL_S[fault],
        backlog,
    )
    if fault == "scale_out":
        run.report.notes.append(await _spread(run))
    await asyncio.sleep(PAUSE_WINDOW_TAIL_S)
    partition, pause = longest_pause(run.tail.arrivals, fault_at, time.monotonic())
    run.report.notes.append(
        f"{fault} on {target}: longest pause of one partition's outcomes {pause:.1f}s "
        f"(partition {partition}), from {result.at_s:.1f}s on"
    )
    return result


def longest_pause(
    arrivals: Mapping[int, Sequence[float]], start: float, end: float
) -> tuple[int, float]:
    """The longest time any partition went without an outcome between ``start`` and ``end``
    (the flood keeps every partition busy, so a pause is a stall): (partition, seconds)."""
    worst = (-1, 0.0)
    for partition, times in arrivals.items():
        before = [t for t in times if t < start]
        inside = [t for t in times if start <= t <= end]
        points = [before[-1] if before else start, *inside]
        gaps = [b - a for a, b in zip(points, points[1:], strict=False)]
        gaps.append(end - points[-1])
        if max(gaps) > worst[1]:
            worst = (partition, max(gaps))
    return worst


# --- workers ------------------------------------------------------------------------------------


def generations(slot: Slot, *, since_start: bool) -> list[int]:
    """The group generations of the assignments this worker took in (its whole log, or since
    its last start)."""
    path = slot.worker.log_path
    if since_start:
        text = slot.log_since_start()
    else:
        text = path.read_text(errors="replace") if path is not None and path.exists() else ""
    return [int(g) for g in _SYNCED.findall(text)]


async def _worker_restart(
    run: _Run, number: int, reference: asyncio.Future[float]
) -> tuple[str, float]:
    slot = run.slots[number % len(run.slots)]
    before = {s.name: len(generations(s, since_start=False)) for s in run.slots}
    last = max((g for s in run.slots for g in generations(s, since_start=False)), default=None)
    started = time.monotonic()
    async with slot.lock:
        slot.held = True
        try:
            await asyncio.to_thread(slot.worker.kill, signal.SIGTERM)
            stopped = time.monotonic()
            await asyncio.to_thread(slot.start)
            reference.set_result(time.monotonic())
        finally:
            slot.held = False
    deadline = time.monotonic() + 60
    while not slot.ready() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    ready_s = time.monotonic() - reference.result()
    await asyncio.sleep(1)
    rejoined = generations(slot, since_start=True)
    others = {
        s.name: generations(s, since_start=False)[before[s.name] :]
        for s in run.slots
        if s is not slot
    }
    run.report.notes.append(
        f"worker_restart of {slot.name}: SIGTERM to exit {stopped - started:.1f}s, new process "
        f"ready {ready_s:.1f}s after its start; group generation before {last}, the restarted "
        f"worker's assignment in generation {rejoined or 'none yet'}; other workers' "
        "assignments since: "
        + (", ".join(f"{name} {gens}" for name, gens in others.items() if gens) or "none")
    )
    return slot.name, time.monotonic() - started


async def _scale_out(run: _Run, number: int, reference: asyncio.Future[float]) -> tuple[str, float]:
    started = time.monotonic()
    reference.set_result(started)
    added = []
    while len(run.slots) < SCALE_TO:
        slot = run.new_slot(len(run.slots) + 1)
        run.slots.append(slot)
        await asyncio.to_thread(slot.start)
        added.append(slot.name)
    # The rebalance comes when they join, seconds after their start: the measurement window
    # (``longest_pause``) must reach past it.
    deadline = time.monotonic() + 60
    while not all(slot.ready() for slot in run.slots) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(3)
    return "+" + ",".join(added), time.monotonic() - started


async def _scale_in(run: _Run, number: int, reference: asyncio.Future[float]) -> tuple[str, float]:
    started = time.monotonic()
    reference.set_result(started)
    leaving = run.slots[1:]
    for slot in leaving:
        slot.held = True
    await asyncio.gather(*(asyncio.to_thread(slot.worker.kill, signal.SIGTERM) for slot in leaving))
    del run.slots[1:]
    return "-" + ",".join(slot.name for slot in leaving), time.monotonic() - started


async def _spread(run: _Run) -> str:
    """How the request partitions are spread over the workers, once every worker has some."""
    deadline = time.monotonic() + 30
    rows: list[Any] = []
    while time.monotonic() < deadline:
        status, body = await asyncio.to_thread(
            run.slots[0].worker.get, "/api/v1/onboarding/migration/workers"
        )
        rows = body.get("workers", []) if status == 200 and isinstance(body, dict) else []
        if len(rows) == len(run.slots) and all(row.get("partitions") for row in rows):
            break
        await asyncio.sleep(1)
    counts = sorted(len(row.get("partitions", [])) for row in rows)
    return f"after scale_out: {len(rows)} workers hold {counts} request partitions"


# --- brokers ------------------------------------------------------------------------------------


async def _admin(run: _Run) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=run.stack.settings.kafka_bootstrap_servers, request_timeout_ms=10_000
    )
    await admin.start()
    return admin


async def leaders(run: _Run) -> Counter[int]:
    """How many request partitions each broker leads."""
    admin = await _admin(run)
    try:
        described = await admin.describe_topics([topics.REQUESTED])
    finally:
        await admin.close()
    return Counter(p["leader"] for t in described for p in t["partitions"] if p["leader"] >= 0)


async def transaction_coordinator(run: _Run, partition: int) -> int:
    client = AIOKafkaClient(bootstrap_servers=run.stack.settings.kafka_bootstrap_servers)
    await client.bootstrap()
    try:
        node: int = await client.coordinator_lookup(
            CoordinationType.TRANSACTION, f"{run.slots[0].worker.app_id}-migrate-{partition}"
        )
        return node
    finally:
        await client.close()


async def fully_replicated(run: _Run, timeout_s: float = 120) -> float:
    """Wait until every partition of every topic has all its replicas in sync; seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            admin = await _admin(run)
            try:
                described = await admin.describe_topics()
            finally:
                await admin.close()
            short = [
                (t["topic"], p["partition"])
                for t in described
                for p in t["partitions"]
                if len(p["isr"]) < len(p["replicas"])
            ]
            if not short:
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - a cluster still electing: ask again
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError(f"partitions not fully replicated within {timeout_s:.0f}s")


async def _kill_broker(run: _Run, node: int, reference: asyncio.Future[float]) -> float:
    name = broker_name(node)
    started = time.monotonic()
    await asyncio.to_thread(kill_server, run.stack, name)
    reference.set_result(time.monotonic())
    await asyncio.sleep(BROKER_DOWN_S)
    await asyncio.to_thread(restart_servers, run.stack)
    down = time.monotonic() - started
    run.report.notes.append(
        f"{name} back after {down:.1f}s; all replicas in sync "
        f"{await fully_replicated(run):.1f}s later"
    )
    return down


async def _broker_leader_kill(
    run: _Run, number: int, reference: asyncio.Future[float]
) -> tuple[str, float]:
    led = await leaders(run)
    node = led.most_common(1)[0][0]
    run.report.notes.append(f"request partitions led per broker before the kill: {dict(led)}")
    return broker_name(node), await _kill_broker(run, node, reference)


async def _broker_coordinator_kill(
    run: _Run, number: int, reference: asyncio.Future[float]
) -> tuple[str, float]:
    node = await transaction_coordinator(run, 0)
    run.report.notes.append(f"partition 0's transaction coordinator: broker {node}")
    return broker_name(node), await _kill_broker(run, node, reference)


async def _broker_restart(
    run: _Run, number: int, reference: asyncio.Future[float]
) -> tuple[str, float]:
    done = sum(1 for r in run.report.recoveries if r.fault == "broker_restart")
    node = done % 3 + 1
    name = broker_name(node)
    started = time.monotonic()
    await asyncio.to_thread(kill_server, run.stack, name, sig=signal.SIGTERM, timeout_s=60)
    reference.set_result(started)
    await asyncio.to_thread(restart_servers, run.stack)
    back = time.monotonic() - started
    run.report.notes.append(
        f"rolling restart: {name} stopped and back in {back:.1f}s; all replicas in sync "
        f"{await fully_replicated(run):.1f}s later"
    )
    return name, time.monotonic() - started


_HANDLERS = {
    "worker_restart": _worker_restart,
    "broker_leader_kill": _broker_leader_kill,
    "broker_coordinator_kill": _broker_coordinator_kill,
    "broker_restart": _broker_restart,
    "scale_out": _scale_out,
    "scale_in": _scale_in,
}
