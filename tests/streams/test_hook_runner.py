"""A hook as a real process: the event on standard input and in its environment, a clean
environment otherwise, a failure in one line, a timeout that kills it, a missing one ignored."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from agents.core import run_events
from streams.hook_runner import run_hook

EVENT = run_events.from_control(
    3,
    "pause",
    {"paused": True, "auto": True, "by": "auto: h:1", "reason": "Redis unavailable for 31 s"},
    in_progress=["wave-1"],
    fallback_at=datetime(2026, 12, 2, tzinfo=UTC),
)


def _hook(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


async def test_a_hook_reads_the_event_and_its_environment(tmp_path: Path) -> None:
    assert EVENT is not None and EVENT.hook == "on-auto-pause"
    _hook(
        tmp_path,
        "on-auto-pause",
        'cat > "$PWD/stdin.json"; env > "$PWD/env.txt"\n',
    )
    result = await run_hook(tmp_path, EVENT, app_id="app", timeout_s=10)
    assert result.state == "done", result
    assert json.loads((tmp_path / "stdin.json").read_text())["event_id"] == "control-3"
    env = dict(
        line.split("=", 1)
        for line in (tmp_path / "env.txt").read_text().splitlines()
        if "=" in line
    )
    assert env["MIGRATOR_EVENT"] == "auto_paused" and env["MIGRATOR_RUNS"] == "wave-1"
    assert env["MIGRATOR_REASON"] == "Redis unavailable for 31 s"
    assert "DATABASE_URL" not in env and "MIGRATOR_ADMIN_TOKEN" not in env


async def test_a_failure_is_one_line_and_a_slow_hook_is_killed(tmp_path: Path) -> None:
    assert EVENT is not None
    _hook(tmp_path, "on-auto-pause", 'echo "first" >&2; echo "pager down" >&2; exit 3\n')
    result = await run_hook(tmp_path, EVENT, app_id="app", timeout_s=10)
    assert result.state == "failed" and result.detail.startswith("exit 3 after ")
    assert result.detail.endswith(": pager down") and "\n" not in result.detail

    # Exits at once, not reading the event (a large one fills the pipe): still its own exit.
    big = EVENT.model_copy(update={"reason": "x" * 500, "auto_pause": {"pad": "y" * 200_000}})
    _hook(tmp_path, "on-auto-pause", "exit 4\n")
    result = await run_hook(tmp_path, big, app_id="app", timeout_s=10)
    assert result.state == "failed" and result.detail.startswith("exit 4 after "), result

    _hook(tmp_path, "on-auto-pause", "sleep 30 & sleep 30\n")
    started = time.monotonic()
    result = await run_hook(tmp_path, EVENT, app_id="app", timeout_s=0.5)
    assert result.state == "timeout" and time.monotonic() - started < 5

    (tmp_path / "on-auto-pause").unlink()
    assert (await run_hook(tmp_path, EVENT, app_id="app", timeout_s=1)).state == "missing"
