"""`migrator stack` starts real servers that answer, is idempotent, and stops all it started."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

MIGRATOR = [sys.executable, "-m", "streams.cli"]


def _processes_under(directory: Path) -> list[int]:
    """Pids of live processes whose working directory is inside ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd.is_relative_to(directory.resolve()):
            found.append(int(entry.name))
    return found


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MIGRATOR, *args], capture_output=True, text=True, timeout=240, env=env, check=False
    )


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    # Not pytest's private basetemp: under root PostgreSQL runs as `nobody` and must reach it.
    directory = Path(tempfile.mkdtemp(prefix="migrator-stack-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_up_status_up_down_leaves_nothing_behind(stack_dir: Path) -> None:
    first = _run("stack", "up", "--dir", str(stack_dir))
    try:
        assert first.returncode == 0, first.stderr
        lines = first.stdout.strip().splitlines()
        assert [line.split("=", 1)[0] for line in lines] == [
            "export KAFKA_BROKER_URL",
            "export DATABASE_URL",
            "export REDIS_URL",
        ]
        status = _run("stack", "status", "--dir", str(stack_dir))
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("answers") == 3

        again = _run("stack", "up", "--dir", str(stack_dir))
        assert again.returncode == 0 and again.stdout == first.stdout
        assert len(_processes_under(stack_dir)) >= 3
    finally:
        down = _run("stack", "down", "--dir", str(stack_dir))
    assert down.returncode == 0, down.stderr
    assert _processes_under(stack_dir) == []
    stopped = _run("stack", "status", "--dir", str(stack_dir))
    assert stopped.returncode == 1 and stopped.stdout.count("stopped") == 3


def test_missing_java_is_one_clear_line(stack_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty directory: no java, no mvn
    result = _run("stack", "up", "--dir", str(stack_dir), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "java not found" in result.stderr and "openjdk-17" in result.stderr
    assert _processes_under(stack_dir) == []
