"""The worker's outcome history: rates between samples, an hour kept."""

from __future__ import annotations

from streams.history import OutcomeHistory, Sample


def test_rates_are_taken_between_consecutive_samples_and_never_negative() -> None:
    history = OutcomeHistory(keep_s=60)
    for t, answered, failed in ((0, 0, 0), (5, 500, 10), (10, 1500, 10), (15, 100, 0)):
        history.add(Sample(1000 + t, answered, failed))
    assert history.points() == [
        {"t": 1005, "outcomes_per_s": 100.0, "failures_per_s": 2.0},
        {"t": 1010, "outcomes_per_s": 200.0, "failures_per_s": 0.0},
        {"t": 1015, "outcomes_per_s": 0.0, "failures_per_s": 0.0},
    ]


def test_samples_older_than_the_horizon_are_dropped() -> None:
    history = OutcomeHistory(keep_s=60)
    for t in range(0, 200, 5):
        history.add(Sample(t, t * 10, 0))
    points = history.points()
    assert points[0]["t"] >= 195 - 60 and points[-1]["t"] == 195
