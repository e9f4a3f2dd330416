"""JSON log lines: one object per line, with the request's ids when the caller gave them."""

from __future__ import annotations

import json
import logging
import logging.config
import sys

import pytest

from streams.logs import logging_config


def test_text_format_leaves_faust_its_own_logging() -> None:
    assert logging_config("info", "text") is None


def test_json_lines_carry_level_message_ids_and_the_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = logging_config("warning", "json")
    assert config is not None
    config["handlers"]["stderr"]["stream"] = sys.stderr  # the stream capsys captures
    logging.config.dictConfig(config)
    try:
        log = logging.getLogger("agents.batch_applier")
        log.info("below the level: not written")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("request %s failed", "r-1", extra={"request_id": "r-1", "user_id": "u-1"})
        lines = capsys.readouterr().err.strip().splitlines()
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "error" and entry["logger"] == "agents.batch_applier"
    assert entry["message"] == "request r-1 failed"
    assert (entry["request_id"], entry["user_id"]) == ("r-1", "u-1")
    assert "ValueError: boom" in entry["exception"]
