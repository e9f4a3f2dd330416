"""The progress bar's rate and ETA (``streams.cli.output.Progress``): what a resumed job did
before it started is left out of both."""

from __future__ import annotations

import pytest

from streams.cli import output


def test_the_line_has_rate_and_eta(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([100.0, 110.0])
    monkeypatch.setattr(output.time, "monotonic", lambda: next(clock))
    progress = output.Progress(1_000, "verify", start=200)
    progress.update(400, force=True)  # 200 done in 10 s: 20/s, 600 left: 30 s
    line = capsys.readouterr().err
    assert "400/1000" in line and " 20/s ETA 30s" in line


def test_eta_reads_minutes() -> None:
    assert output._eta(0, 0) == "0s"
    assert output._eta(10, 0) == "-"
    assert output._eta(9_000, 100) == "1m30s"
