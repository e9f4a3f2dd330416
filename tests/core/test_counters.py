"""Live counter arithmetic: what counts where (contract §9), merging, percentiles, rate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.core import counters
from schemas.events import OUTCOME, Outcome, OutcomeError


def outcome(
    kind: str = "migrated",
    *,
    dry_run: bool = False,
    already_done: bool = False,
    code: str | None = None,
) -> Outcome:
    error = OutcomeError(code=code, retryable=False, message="m") if code else None
    return OUTCOME.validate_python(
        {
            "event_id": uuid.uuid4(),
            "request_id": uuid.uuid4(),
            "user_id": "u",
            "action": "migrate",
            "outcome": kind,
            "dry_run": dry_run,
            "already_done": already_done,
            "error": error,
            "request": {"user_id": "u"} if kind == "failed" else None,
            "processed_at": datetime.now(UTC),
        }
    )


def delta(outcomes: list[Outcome], **kw: Any) -> dict[str, Any]:
    return counters.batch_delta(
        outcomes, [5.0] * len(outcomes), dead_lettered=kw.get("dead", 0), now_s=1000
    )


def test_what_counts_where() -> None:
    d = delta(
        [
            outcome(),
            outcome(already_done=True),
            outcome("failed", code="user_not_found"),
            outcome("rolled_back"),
            outcome(dry_run=True),
            outcome("failed", dry_run=True, code="user_not_found"),
        ],
        dead=2,
    )
    assert (
        d["requested"],
        d["migrated"],
        d["already_done"],
        d["failed"],
        d["rolled_back"],
        d["dry_run"],
        d["dead_lettered"],
    ) == (6, 2, 1, 1, 1, 2, 2)
    assert d["failed_by_code"] == {"user_not_found": 1}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["migrated", "failed", "rolled_back"]), st.booleans(), st.booleans()
        ),
        max_size=40,
    )
)
def test_requested_is_the_sum_of_the_outcome_counters(specs: list[tuple[str, bool, bool]]) -> None:
    items = [
        outcome(
            kind,
            dry_run=dry,
            already_done=done,
            code="user_not_found" if kind == "failed" else None,
        )
        for kind, dry, done in specs
    ]
    s = counters.summary(delta(items), now_s=1000)
    assert s["requested"] == s["migrated"] + s["rolled_back"] + s["failed"] + s["dry_run"]


def test_merge_adds_batches_up() -> None:
    total = counters.merge(counters.empty(), delta([outcome()], dead=1), now_s=1000)
    total = counters.merge(total, delta([outcome("failed", code="user_not_found")]), now_s=1000)
    assert (total["requested"], total["migrated"], total["failed"], total["dead_lettered"]) == (
        2,
        1,
        1,
        1,
    )
    assert total["failed_by_code"] == {"user_not_found": 1}


def test_combine_adds_partitions_and_summary_has_integer_counters() -> None:
    parts = [delta([outcome()]), delta([outcome("failed", code="not_migrated")])]
    s = counters.summary(counters.combine(parts, now_s=1000), now_s=1000)
    for name in counters.COUNTERS:
        assert isinstance(s[name], int)
    assert s["requested"] == 2 and s["failed_by_code"] == {"not_migrated": 1}


def histogram_of(latencies: list[float]) -> dict[str, int]:
    return counters.batch_delta(
        [outcome() for _ in latencies], latencies, dead_lettered=0, now_s=0
    )["latency"]


def test_percentiles_are_measurements_within_two_percent() -> None:
    assert counters.percentile({}, 0.5) is None
    latencies = [float(ms) for ms in range(1, 1001)]  # 1 ms .. 1 s, evenly
    histogram = histogram_of(latencies)
    for quantile, exact in ((0.5, 500.0), (0.95, 950.0), (0.99, 990.0)):
        found = counters.percentile(histogram, quantile)
        assert found is not None and abs(found - exact) <= 0.02 * exact, (quantile, found)


@given(
    st.lists(st.floats(min_value=0.2, max_value=600_000), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.95, 0.99]),
)
def test_a_percentile_lies_within_two_percent_of_a_sample(
    latencies: list[float], quantile: float
) -> None:
    found = counters.percentile(histogram_of(latencies), quantile)
    assert found is not None
    assert min(abs(found - value) / value for value in latencies) <= 0.021


def test_very_short_latencies_fall_in_the_first_bucket() -> None:
    assert counters.latency_bucket(0.0) == 0 and counters.latency_bucket(0.05) == 0
    low, high = counters.bucket_bounds(counters.latency_bucket(12.3))
    assert low <= 12.3 < high and high / low == pytest.approx(counters.LATENCY_GROWTH)


def test_rate_covers_the_last_whole_seconds_only() -> None:
    per_second = {"1000": 60, "950": 60, "900": 600, "1001": 999}
    assert counters.rate_per_s(per_second, now_s=1001) == 2.0  # 1001 is still filling
    assert counters.rate_per_s(per_second, now_s=1001, window_s=10) == 6.0
    merged = counters.merge({"per_second": {"100": 5}}, {"per_second": {"1000": 1}}, now_s=1000)
    assert merged["per_second"] == {"1000": 1}  # older than two minutes is dropped


def test_the_recent_latency_is_the_mean_of_the_last_ten_seconds_only() -> None:
    old = counters.batch_delta([], [100_000.0], dead_lettered=0, now_s=1000)  # waited a pause
    new = counters.batch_delta([], [20.0, 40.0], dead_lettered=0, now_s=1015)
    total = counters.merge(old, new, now_s=1015)
    assert counters.summary(total, now_s=1016)["latency_ms"]["recent_mean"] == 30.0
    assert counters.summary(total, now_s=1016)["latency_ms"]["p99"] > 1000  # all time
    assert counters.summary(total, now_s=1100)["latency_ms"]["recent_mean"] is None
