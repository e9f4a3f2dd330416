"""The open answers without a token: aggregates kept, every user id withheld (null, flagged)."""

from __future__ import annotations

from typing import Any

from agents.core.revalidation_tally import Tally, combine
from streams.web import api, user_ids


def _ids_in(value: Any, *, named: bool = False) -> set[str]:
    """Every string under a key that names users (``user_id``, ``sample_user_ids``, …)."""
    if isinstance(value, str):
        return {value} if named else set()
    if isinstance(value, dict):
        items = [(item, named or "user_id" in key) for key, item in value.items()]
    elif isinstance(value, list):
        items = [(item, named) for item in value]
    else:
        return set()
    return set().union(*(_ids_in(item, named=under) for item, under in items))


def _revalidation() -> dict[str, Any]:
    tally = Tally()
    tally.record("u-1", [("session_in_redis", "missing")], recent=True, at="2025-01-01T00:00:00")
    tally.record(
        "u-2",
        [("legacy_row_unchanged_since_migration", "changed: answers")],
        recent=False,
        at="2025-01-01T00:00:01",
    )
    return {**combine([tally.as_dict()]), "rate_per_s": 2.0}


def test_failures_keep_their_counts_and_lose_their_ids() -> None:
    rows = [
        {"code": "unknown_legacy_step", "retryable": False, "users": 3, "sample_user_ids": ["u-1"]}
    ]
    hidden = api.answer(api.Failures, user_ids.failures(rows, shown=False))
    assert hidden == {
        "failures": [
            {"code": "unknown_legacy_step", "retryable": False, "users": 3, "sample_user_ids": None}
        ],
        "user_ids_withheld": True,
    }
    shown = api.answer(api.Failures, user_ids.failures(rows, shown=True))
    assert shown["failures"][0]["sample_user_ids"] == ["u-1"]
    assert shown["user_ids_withheld"] is False


def test_revalidation_keeps_its_counts_and_drift_details_and_loses_its_ids() -> None:
    found = _revalidation()
    assert _ids_in(found) == {"u-1", "u-2"}  # the helper sees them when they are there
    hidden = api.answer(api.Revalidation, user_ids.revalidation(found, shown=False))
    assert _ids_in(hidden) == set() and hidden["user_ids_withheld"] is True
    assert hidden["latest_user_ids"] is None
    assert hidden["mismatches"] == found["mismatches"] and hidden["sampled"] == 2
    assert hidden["drift"] == [
        {"user_id": None, "detail": "changed: answers", "at": "2025-01-01T00:00:01"}
    ]
    shown = api.answer(api.Revalidation, user_ids.revalidation(found, shown=True))
    assert _ids_in(shown) == {"u-1", "u-2"} and shown["user_ids_withheld"] is False


def test_audit_findings_keep_their_records_and_lose_their_users() -> None:
    finding = {
        "partition": 1,
        "offset": 7,
        "kind": "unanswered",
        "extra_answers": 0,
        "request_id": "r-1",
        "user_id": "u-9",
        "found_at": "2025-01-01T00:00:00",
        "found_by": "host:1",
    }
    found = {
        "ok": False,
        "every_s": 10.0,
        "open": {"unanswered": 1, "duplicated": 0},
        "findings": [finding],
        "partitions": [],
        "worker": {
            "rounds": 1,
            "records": 1,
            "answers": 0,
            "errors": 0,
            "last_error": None,
            "last_round_at": None,
        },
    }
    hidden = api.answer(api.Audit, user_ids.audit(found, shown=False))
    assert hidden["findings"] == [{**finding, "user_id": None}]
    assert hidden["open"] == found["open"] and hidden["user_ids_withheld"] is True
    shown = api.answer(api.Audit, user_ids.audit(found, shown=True))
    assert shown["findings"] == [finding] and shown["user_ids_withheld"] is False
    assert found["findings"][0]["user_id"] == "u-9"  # the read model's answer is not changed
