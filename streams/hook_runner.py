"""Hooks: for each published run event, the executable of ``MIGRATOR_HOOKS_DIR`` named after it
(``on-run-finished``, ``on-auto-pause``, …, gh-ost's convention), with the event in environment
variables and as JSON on standard input.

A background service of the worker, far from the hot path: it takes the events whose hook is
pending from PostgreSQL (nudged by the run-event publisher, or every few seconds), claims each
one before starting it (a claim is made once per event, ever: a hook never runs twice, even
across restarts; one cut short by a crash is marked ``interrupted``, not run again), runs one
hook at a time, kills it at ``MIGRATOR_HOOK_TIMEOUT_S``, and logs a failure in one line. A
missing executable is no error: a directory holds only the hooks someone wants.

Hooks get a clean environment (``PATH`` and the event's variables): the worker's own (tokens,
the database URL) is not theirs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mode import Service

from agents.core.run_events import hook_environment
from agents.stores import run_events as store
from schemas.run_events import RunEvent
from streams.control_topic import worker_name
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.resources import Resources

log = logging.getLogger(__name__)

_LOOK_S = 5.0
# How often claims left by a worker that died mid-hook are looked for.
_INTERRUPTED_LOOK_S = 60.0
# The most of a hook's standard error a failure's log line quotes.
_QUOTE_CHARS = 300


@dataclass(frozen=True)
class HookResult:
    state: str  # done, failed, timeout, missing
    detail: str  # one line


async def run_hook(
    directory: Path, event: RunEvent, *, app_id: str, timeout_s: float
) -> HookResult:
    """Run the event's hook, if the directory has one; never raises for the hook's sake."""
    path = directory / event.hook
    if not path.is_file() or not os.access(path, os.X_OK):
        return HookResult("missing", f"no executable {path}")
    env = {"PATH": os.defpath, **hook_environment(event, app_id=app_id)}
    started = time.monotonic()
    try:
        process = await asyncio.create_subprocess_exec(
            str(path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=str(directory),
            start_new_session=True,  # its children are killed with it at the timeout
        )
    except OSError as exc:
        return HookResult("failed", f"could not start {path}: {exc}")
    payload = (json.dumps(event.model_dump(mode="json"), sort_keys=True) + "\n").encode()
    try:
        stderr = await asyncio.wait_for(_exchange(process, payload), timeout=timeout_s)
    except TimeoutError:
        _kill(process.pid)
        await process.wait()
        return HookResult("timeout", f"killed after {timeout_s:g} s (MIGRATOR_HOOK_TIMEOUT_S)")
    except Exception as exc:  # noqa: BLE001 - whatever the hook did, the worker goes on
        _kill(process.pid)
        await process.wait()
        return HookResult("failed", f"{type(exc).__name__}: {exc}"[:_QUOTE_CHARS])
    took = time.monotonic() - started
    if process.returncode == 0:
        return HookResult("done", f"exit 0 after {took:.1f} s")
    return HookResult(
        "failed", f"exit {process.returncode} after {took:.1f} s: {_last_line(stderr)}"
    )


async def _exchange(process: asyncio.subprocess.Process, payload: bytes) -> bytes:
    """Hand the hook the event and wait for it to end; its standard error. A hook that does not
    read its input (most shell one-liners) may close it first: that is no failure."""
    assert process.stdin is not None and process.stderr is not None
    try:
        process.stdin.write(payload)
        await process.stdin.drain()
    except (BrokenPipeError, ConnectionResetError, RuntimeError):
        pass  # it exited, or closed its input, without reading it all
    finally:
        try:
            process.stdin.close()
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            pass
    stderr = await process.stderr.read()
    await process.wait()
    return stderr


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _last_line(data: bytes | None) -> str:
    lines = (data or b"").decode("utf-8", "replace").strip().splitlines()
    return (lines[-1] if lines else "(nothing on stderr)")[:_QUOTE_CHARS]


class HookRunner(Service):
    """Runs the hooks of published run events, one at a time, each at most once."""

    def __init__(self, settings: Settings, resources: Resources, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        assert settings.hooks_dir is not None
        self.settings = settings
        self.resources = resources
        self.directory = Path(settings.hooks_dir)
        self._nudged = asyncio.Event()
        self.ran: dict[str, int] = {}  # state -> hooks ended so, since start

    def nudge(self) -> None:
        """Events were published: look now rather than at the next round."""
        self._nudged.set()

    @Service.task
    async def _run(self) -> None:
        await self.resources.ready.wait()
        loop = asyncio.get_running_loop()
        looked = -_INTERRUPTED_LOOK_S
        while not self.should_stop:
            if loop.time() - looked >= _INTERRUPTED_LOOK_S:
                looked = loop.time()
                await self._mark_interrupted()
            try:
                await asyncio.wait_for(self._nudged.wait(), timeout=_LOOK_S)
            except TimeoutError:
                pass
            self._nudged.clear()
            try:
                await self._run_due()
            except Exception as exc:  # noqa: BLE001 - PostgreSQL away: the next round
                if not self.should_stop:
                    log.warning("hooks: %s", exc)

    async def _mark_interrupted(self) -> None:
        """Hooks claimed long ago and never ended: their worker died mid-hook. Marked so, and
        said once; never run again (a hook may have acted before it was cut short)."""
        now = datetime.now(UTC)
        cutoff = now - timedelta(seconds=self.settings.hook_timeout_s + 60)
        try:
            found = await store.hooks_interrupted(
                self.resources.pool, self.settings.app_id, claimed_before=cutoff, now=now
            )
        except Exception as exc:  # noqa: BLE001 - looked at again at the next start
            log.warning("hooks: could not look for interrupted hooks: %s", exc)
            return
        for event_id, kind in found:
            log.warning("hook for event %s (%s) was interrupted: not run again", event_id, kind)

    async def _run_due(self) -> None:
        pool, app_id = self.resources.pool, self.settings.app_id
        while not self.should_stop:
            due = await store.hooks_due(pool, app_id)
            if not due:
                return
            for event_id in due:
                event = await store.claim_hook(
                    pool, app_id, event_id, now=datetime.now(UTC), worker=worker_name()
                )
                if event is None:
                    continue  # another worker claimed it
                result = await run_hook(
                    self.directory,
                    event,
                    app_id=app_id,
                    timeout_s=self.settings.hook_timeout_s,
                )
                self.ran[result.state] = self.ran.get(result.state, 0) + 1
                if result.state in ("failed", "timeout"):
                    log.warning(
                        "hook %s for event %s %s: %s",
                        event.hook,
                        event.event_id,
                        "timed out" if result.state == "timeout" else "failed",
                        result.detail,
                    )
                elif result.state == "done":
                    log.info("hook %s for event %s: %s", event.hook, event.event_id, result.detail)
                await store.hook_done(
                    pool,
                    app_id,
                    event.event_id,
                    state=result.state,
                    detail=result.detail,
                    now=datetime.now(UTC),
                )
