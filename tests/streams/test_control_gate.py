"""The gate every batch passes (``ControlWatcher.admit``), without Kafka: a pause holds it, a
throttle spaces it, and neither outlives the state that imposed it or a stopping worker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from agents.core import control_state
from streams.control_watcher import ControlWatcher
from streams.settings import Settings


def watcher() -> tuple[ControlWatcher, Any]:
    app = SimpleNamespace(should_stop=False)
    resources = SimpleNamespace(batch_applier=None, redis=None)
    gate = ControlWatcher(Settings.from_env({}), app, resources)  # type: ignore[arg-type]
    gate.owned_partitions = lambda: {0, 1, 2, 3}  # type: ignore[method-assign,assignment,return-value]
    gate.ready.set()
    return gate, app


def change(gate: ControlWatcher, key: str, value: dict[str, Any]) -> None:
    gate._set(control_state.apply(gate.current, key, value))


async def admitted_within(gate: ControlWatcher, seconds: float) -> bool | None:
    """What ``admit`` answered, or None if it still waits after ``seconds``."""
    task = asyncio.ensure_future(gate.admit(1, revoking=lambda: False))
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        return None
    return task.result()


async def test_lifting_a_throttle_releases_a_batch_waiting_for_its_slot() -> None:
    gate, _ = watcher()
    change(gate, control_state.THROTTLE, {"rate": 0.001})  # one user every 1,000 s
    assert await admitted_within(gate, 0.5) is True  # the first slot is now
    waiting = asyncio.ensure_future(gate.admit(1, revoking=lambda: False))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    change(gate, control_state.THROTTLE, {"rate": None})
    assert await asyncio.wait_for(waiting, timeout=1.0) is True


async def test_a_new_throttle_replaces_the_slots_booked_at_the_old_rate() -> None:
    gate, _ = watcher()
    change(gate, control_state.THROTTLE, {"rate": 0.001})
    assert await admitted_within(gate, 0.5) is True
    change(gate, control_state.THROTTLE, {"rate": 1000.0})
    assert await admitted_within(gate, 0.5) is True


async def test_a_pause_holds_a_batch_until_resumed() -> None:
    gate, _ = watcher()
    change(gate, control_state.PAUSE, {"paused": True, "reason": "looking"})
    assert await admitted_within(gate, 0.5) is None
    waiting = asyncio.ensure_future(gate.admit(1, revoking=lambda: False))
    change(gate, control_state.PAUSE, {"paused": False})
    assert await asyncio.wait_for(waiting, timeout=1.0) is True


async def test_a_stopping_worker_is_not_held_by_a_throttle_and_drops_paused_batches() -> None:
    gate, app = watcher()
    change(gate, control_state.THROTTLE, {"rate": 0.001})
    assert await admitted_within(gate, 0.5) is True
    waiting = asyncio.ensure_future(gate.admit(1, revoking=lambda: False))
    await asyncio.sleep(0.3)
    app.should_stop = True
    assert await asyncio.wait_for(waiting, timeout=1.0) is True
    change(gate, control_state.PAUSE, {"paused": True})
    assert await admitted_within(gate, 1.0) is False


async def test_a_revoked_partition_passes_a_pause() -> None:
    gate, _ = watcher()
    change(gate, control_state.PAUSE, {"paused": True})
    assert await asyncio.wait_for(gate.admit(1, revoking=lambda: True), timeout=1.0) is True
