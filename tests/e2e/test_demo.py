"""``make demo`` run twice in a row ends both times (its own stack, in a directory of its own).

The second run once re-enqueued every user known to fail for good, tripped the failure budget on
its first batch and printed the same AUTO-PAUSED line until killed. Now those users are held out
of "everyone not yet migrated", so the second run has nothing to publish and ends at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import ROOT

from streams.stack.ports import free_port

pytestmark = [pytest.mark.e2e]

DEMO = [sys.executable, str(ROOT / "scripts" / "demo.py")]


@pytest.fixture
def demo_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="migrator-demo-") as directory:
        os.chmod(directory, 0o755)  # PostgreSQL runs as nobody under root: it must get in
        yield Path(directory)
        subprocess.run(
            [*DEMO, "--stop"],
            env={**os.environ, "DEMO_DIR": directory},
            cwd=ROOT,
            capture_output=True,
            timeout=120,
            check=False,
        )


def test_the_demo_run_twice_ends_both_times(demo_dir: Path) -> None:
    env = {**os.environ, "DEMO_DIR": str(demo_dir)}
    for key in ("KAFKA_BROKER_URL", "DATABASE_URL", "REDIS_URL"):
        env.pop(key, None)  # the demo's own stack, not the test suite's
    port = str(free_port())
    outputs = []
    for attempt in (1, 2):
        started = time.monotonic()
        result = subprocess.run(
            [*DEMO, "--users", "2000", "--port", port],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        took = time.monotonic() - started
        assert result.returncode == 0, f"run {attempt}:\n{result.stdout}\n{result.stderr}"
        print(f"demo run {attempt}: {took:.0f} s")
        outputs.append(result.stdout)
    first, second = outputs
    assert "== the run" in first and "took" in first, first
    assert "nothing to publish" in second, second
    assert "== done: 0 of 0 requests answered" in second, second
