"""Every command, with every server down or a bad argument, ends in one line and exit code 2.

The servers are "down" by pointing at a port nothing listens on; the commands run as the
operator runs them (a process each, in parallel to keep this a few seconds).
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

DEAD = {
    "KAFKA_BROKER_URL": "kafka://127.0.0.1:9",
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/migrator",
    "REDIS_URL": "redis://127.0.0.1:9/0",
    "MIGRATOR_WEB_PORT": "9",
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("cli")
    (folder / "latin1.txt").write_bytes("müller\n".encode("latin-1"))
    (folder / "bad.txt").write_text("u1\nbad id!\n", encoding="utf-8")
    (folder / "not-a-plan.jsonl").write_text('{"hello": 1}\n', encoding="utf-8")
    names = {"latin1": "latin1.txt", "bad": "bad.txt", "plan": "not-a-plan.jsonl"}
    return {key: str(folder / name) for key, name in names.items()}


CASES: list[tuple[list[str], str]] = [
    (["db", "init"], "PostgreSQL at"),
    (["seed-legacy", "--users", "5"], "PostgreSQL at"),
    (["seed-legacy", "--users", "-1"], "not a positive whole number"),
    (["seed-legacy", "--users", "5", "--with-problems", "2"], "not a share between 0 and 1"),
    (["stats", "--url", "ftp://x"], "http:// or https://"),
    (["stats", "--watch", "--interval", "0"], "at least 0.5 s"),
    (["replay", "--since", "2026-12-02T10:00", "--until", "2026-12-01T10:00"], "not after --since"),
    (["worker"], "PostgreSQL at"),
    (["enqueue"], "PostgreSQL at"),
    (["enqueue", "--ids", "u1", "--execute"], "Kafka at kafka://127.0.0.1:9 is not reachable"),
    (["enqueue", "--file", "/no/such/file"], "no such file"),
    (["enqueue", "--file", "{latin1}"], "not UTF-8"),
    (["enqueue", "--file", "{bad}"], "line 2: 'bad id!' is not a user id"),
    (["enqueue", "--from-plan", "{plan}"], "not a plan"),
    (["enqueue", "--bogus"], "unrecognized arguments"),
    (["rollback"], "say whom to roll back"),
    (["rollback", "--ids", "u1"], "PostgreSQL at"),
    (["rollback", "--ids", "u1,bad id"], "'bad id' is not a user id"),
    (["replay"], "Kafka at kafka://127.0.0.1:9 is not reachable"),
    (["replay", "--since", "yesterday"], "'yesterday' is not an ISO time"),
    (["replay", "--code", "bogus"], "invalid choice"),
    (["validate", "u1"], "PostgreSQL at"),
    (["validate", "bad id!"], "'bad id!' is not a user id"),
    (["resync-redis"], "PostgreSQL at"),
    (["stats"], "no worker answers"),
    (["runs"], "PostgreSQL at"),
    (["runs", "show", "canary"], "PostgreSQL at"),
    (["runs", "show", "bad run!"], "is not a run name"),
    (["runs", "report", "canary", "--format", "xml"], "invalid choice"),
    (["runs", "cancel", "canary"], "PostgreSQL at"),
    (["runs", "cancel", "bad run!", "--execute"], "is not a run name"),
    (["enqueue", "--percent", "1"], "--percent starts a run"),
    (["enqueue", "--run", "canary", "--percent", "0"], "not a percent in (0, 100]"),
    (["enqueue", "--run", "canary", "--percent", "5", "--ids", "u1"], "not given ids"),
    (["rollback", "--run", "canary", "--ids", "u1"], "no --ids/--file beside it"),
    (["rollback", "--run", "canary"], "PostgreSQL at"),
    (["control", "status"], "Kafka at kafka://127.0.0.1:9 is not reachable"),
    (["control", "pause", "--reason", "x"], "Kafka at kafka://127.0.0.1:9 is not reachable"),
    (["control", "throttle", "--rate", "-5"], "not a rate"),
    (["control", "throttle", "--rate", "0.0000001"], "pause instead"),
    (["control", "throttle"], "one of the arguments --rate --off is required"),
    (["control"], "required"),
    (["stack", "status", "--dir", "/no/such/stack"], ""),
]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **DEAD}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )


def test_every_failure_is_one_line_naming_the_cause(files: dict[str, str]) -> None:
    commands = [[arg.format(**files) for arg in argv] for argv, _ in CASES]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(_run, commands))
    problems = []
    for (argv, expected), result in zip(CASES, results, strict=True):
        lines = result.stderr.strip().splitlines()
        if argv[0] == "stack":  # a stack that is not there is a status, not an error
            continue
        if result.returncode != 2 or len(lines) != 1 or expected not in result.stderr:
            problems.append(f"migrator {' '.join(argv)} -> {result.returncode}: {result.stderr}")
    assert not problems, "\n".join(problems)


def test_a_server_down_names_the_stack_to_start_again(tmp_path: Path) -> None:
    """The demo's servers are under .stack/demo: the hint restarts that stack, not a new one."""
    from streams.connections import stack_of, unreachable

    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "stack.json").write_text('{"kafka": 40123, "postgres": 40124, "redis": 40125}')
    assert stack_of("127.0.0.1:40123", root=tmp_path) == demo
    assert stack_of("postgresql://postgres@127.0.0.1:40124/migrator", root=tmp_path) == demo
    assert stack_of("127.0.0.1:9092", root=tmp_path) is None
    assert stack_of("kafka.prod:9092", root=tmp_path) is None
    line = unreachable("Kafka", "127.0.0.1:9092")
    assert line.endswith('start one with: eval "$(migrator stack up)"'), line
