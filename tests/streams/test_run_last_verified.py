"""A run's last verification as ``GET runs/{run_id}`` answers it (the documented model) and as
``runs show`` prints it: never verified, verified clean, verified with mismatches."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from agents.core.cohorts import summarize
from streams.cli.runs import _verified
from streams.web import api

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
RUN = {
    "run_id": "canary",
    "created_at": NOW - timedelta(minutes=5),
    "created_by": "ops",
    "migrate_requested": 10,
    "rollback_requested": 0,
}
LAST = {
    "verify_id": 7,
    "at": NOW.isoformat(),
    "ok": False,
    "checked": 10,
    "mismatched": 2,
    "by_check": {"redis_pointer": 1, "steps": 1},
}


def test_never_verified_is_null_and_says_how() -> None:
    run = summarize(RUN, [], now=NOW)
    assert api.answer(api.Run, run.as_dict())["last_verified"] is None
    assert _verified(run) == "never: migrator verify --run canary"


def test_the_last_verification_is_answered_and_shown() -> None:
    run = replace(summarize(RUN, [], now=NOW), verified=LAST)
    assert api.answer(api.Run, run.as_dict())["last_verified"] == LAST
    shown = _verified(run)
    assert shown.startswith(f"{NOW.isoformat()} (verification 7), 10 user(s): MISMATCHES")
    assert "redis_pointer 1, steps 1" in shown
    clean = replace(run, verified={**LAST, "ok": True, "mismatched": 0, "by_check": {}})
    assert _verified(clean).endswith("OK, every check holds")
