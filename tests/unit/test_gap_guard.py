"""The fail-stop for records lost inside the stream: it stops, and it restarts the same command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from faust.transport.consumer import Consumer

from streams import gap_guard


async def test_a_gap_in_a_guarded_topic_stops_instead_of_being_recorded() -> None:
    calls: list[str] = []
    gap_guard.install("guarded-topic-for-test", on_gap=lambda: calls.append("restart"))
    consumer = SimpleNamespace()  # the guarded path must not touch the consumer at all
    tp = SimpleNamespace(topic="guarded-topic-for-test", partition=0)
    await Consumer._add_gap(consumer, tp, 10, 20)  # type: ignore[arg-type]  # noqa: SLF001
    assert calls == ["restart"]


def test_restart_runs_the_same_command_line_again(tmp_path: Path) -> None:
    package = tmp_path / "probe_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(
        "import os, sys\n"
        "if os.environ.get('PROBE_RESTARTED'):\n"
        "    print('again', sys.orig_argv[1:])\n"
        "else:\n"
        "    os.environ['PROBE_RESTARTED'] = '1'\n"
        "    from streams.gap_guard import restart_process\n"
        "    restart_process()\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "probe_pkg.main", "worker", "-l", "info"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "again ['-m', 'probe_pkg.main', 'worker', '-l', 'info']"
