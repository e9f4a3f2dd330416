"""``migrator preflight`` with no server answering: a whole checklist, each server a ✗ with its
fix, the checks that need it skipped, exit 1, and no traceback."""

from __future__ import annotations

import pytest

from streams.cli.main import main


def test_servers_down_are_blockers_and_their_checks_are_skipped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Ports nobody listens on: every connection is refused at once.
    monkeypatch.setenv("KAFKA_BROKER_URL", "kafka://127.0.0.1:9")
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/migrator")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")

    assert main(["preflight"]) == 1

    out, err = capsys.readouterr()
    lines = out.splitlines()
    for server in ("PostgreSQL", "Redis", "Kafka"):
        assert any(line.startswith(f"✗ {server} answers: ") for line in lines), out
    assert "– rollback rehearsal: PostgreSQL does not answer" in lines
    assert "– hanging transactions: Kafka does not answer" in lines
    assert lines[-1].startswith("preflight: 3 blockers")
    assert "Traceback" not in out + err


def test_a_bad_argument_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["preflight", "--transaction-wait", "0"])
    assert exited.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("between 0.2 and 60 seconds (see migrator preflight --help)")
    )
