"""``scripts/bench --compare``: the run order, the verdict rule and the report's shape.

The runs themselves need servers and minutes; what decides "faster", "slower" or "cannot tell"
is pure and is pinned here, with the p-values the exact Mann-Whitney test is known to give.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
bench_compare = importlib.import_module("bench_compare")


def _runs(ref: list[float], head: list[float], cpu: float = 0.3) -> list[dict[str, Any]]:
    runs = []
    for pair, side in bench_compare.run_order(len(ref)):
        value = (ref if side == "REF" else head)[pair - 1]
        runs.append(
            {
                "pair": pair,
                "side": side,
                "commit": "abc1234" if side == "REF" else "def5678",
                "users_per_s": value,
                "worker_cpu_s_per_1000_users": cpu,
                "postgres_cpu_s_per_1000_users": cpu / 2,
            }
        )
    return runs


def test_the_order_alternates_which_side_runs_first() -> None:
    assert bench_compare.run_order(3) == [
        (1, "REF"),
        (1, "HEAD"),
        (2, "HEAD"),
        (2, "REF"),
        (3, "REF"),
        (3, "HEAD"),
    ]
    assert bench_compare.run_order(1) == [(1, "REF"), (1, "HEAD")]


def test_tied_values_share_their_mean_rank() -> None:
    assert bench_compare.midranks([30.0, 10.0, 20.0, 20.0]) == [4.0, 1.0, 2.5, 2.5]


@pytest.mark.parametrize(
    ("first", "second", "p"),
    [
        ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], 2 / 20),  # apart: the smallest p of 3 against 3
        ([1.0, 2.0, 4.0], [3.0, 5.0, 6.0], 4 / 20),  # one overlap (U = 1)
        ([1.0], [2.0], 1.0),  # one pair can never tell
        ([0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0, 9.0], 2 / 252),
        ([5.0, 5.0, 5.0], [5.0, 5.0, 5.0], 1.0),  # all tied
    ],
)
def test_exact_rank_sum_p_values(first: list[float], second: list[float], p: float) -> None:
    assert bench_compare.rank_sum_p(first, second) == pytest.approx(p)
    assert bench_compare.rank_sum_p(second, first) == pytest.approx(p)  # two-sided


def test_many_runs_are_sampled_with_a_fixed_seed() -> None:
    first, second = [float(v) for v in range(12)], [float(v) for v in range(12, 24)]
    assert math.comb(24, 12) > bench_compare.EXACT_MOST
    p = bench_compare.rank_sum_p(first, second)
    assert p < 0.001
    assert bench_compare.rank_sum_p(first, second) == p


def test_apart_and_better_is_a_verdict_for_head() -> None:
    result = bench_compare.verdict(
        "users_per_s", [2500.0, 2510.0, 2490.0], [2700.0, 2690.0, 2710.0]
    )
    assert result["verdict"] == "HEAD faster"
    assert result["p_value"] == pytest.approx(0.1)
    assert result["head_vs_ref_median_pct"] == pytest.approx(8.0)
    assert result["ref"] == {
        "values": [2500.0, 2510.0, 2490.0],
        "median": 2500.0,
        "min": 2490.0,
        "max": 2510.0,
    }
    slower = bench_compare.verdict(
        "users_per_s", [2700.0, 2690.0, 2710.0], [2500.0, 2510.0, 2490.0]
    )
    assert slower["verdict"] == "HEAD slower"


def test_for_cpu_lower_is_better() -> None:
    less = bench_compare.verdict("worker_cpu_s_per_1000_users", [0.4, 0.41, 0.42], [0.3, 0.31, 0.3])
    more = bench_compare.verdict("worker_cpu_s_per_1000_users", [0.3, 0.31, 0.3], [0.4, 0.41, 0.42])
    assert (less["verdict"], more["verdict"]) == ("HEAD uses less CPU", "HEAD uses more CPU")


def test_overlapping_ranges_or_a_single_pair_cannot_tell() -> None:
    overlap = bench_compare.verdict(
        "users_per_s", [2500.0, 2600.0, 2700.0], [2650.0, 2750.0, 2800.0]
    )
    assert overlap["verdict"] == "cannot tell at this noise"
    single = bench_compare.verdict("users_per_s", [1000.0], [3000.0])
    assert single["verdict"] == "cannot tell at this noise"
    assert single["head_vs_ref_median_pct"] == pytest.approx(200.0)


def test_the_rule_says_what_few_pairs_can_reach() -> None:
    assert "with 1 pair it can never be reached" in bench_compare.rule_text(1)
    assert "with 2 pairs it can never be reached" in bench_compare.rule_text(2)
    assert "the smallest p 3 pairs can give is 0.1" in bench_compare.rule_text(3)
    assert "p <= 0.1 (90 % confidence)" in bench_compare.rule_text(3)


def test_the_summary_groups_each_sides_runs_in_run_order() -> None:
    runs = _runs([2500.0, 2510.0, 2490.0], [2700.0, 2690.0, 2710.0])
    result = bench_compare.summary(runs, 3)
    assert set(result) == {"rule", "alpha", "metrics"}
    assert set(result["metrics"]) == {
        "users_per_s",
        "worker_cpu_s_per_1000_users",
        "postgres_cpu_s_per_1000_users",
    }
    users = result["metrics"]["users_per_s"]
    assert users["ref"]["values"] == [2500.0, 2510.0, 2490.0]
    assert users["head"]["values"] == [2700.0, 2690.0, 2710.0]
    assert result["metrics"]["worker_cpu_s_per_1000_users"]["verdict"] == (
        "cannot tell at this noise"
    )


def test_the_table_shows_every_run_both_distributions_and_the_verdicts() -> None:
    runs = _runs([2500.0, 2510.0, 2490.0], [2700.0, 2690.0, 2710.0])
    report = {
        "ref": {"commit": "abc1234", "subject": "the reference"},
        "head": {"commit": "def5678", "dirty": True},
        "pairs": 3,
        "users": 20_000,
        "runs": runs,
        **bench_compare.summary(runs, 3),
    }
    text = bench_compare.table(report)
    assert text.splitlines()[0] == (
        "bench --compare: REF abc1234 (the reference) vs HEAD def5678 (the working tree's "
        "uncommitted changes are not measured)"
    )
    assert "3 pair(s) of runs, 20,000 freshly seeded users each" in text
    assert sum(" REF   abc1234 " in line for line in text.splitlines()) == 3
    users_line = next(line for line in text.splitlines() if line.startswith("  users/s"))
    assert "2,500 (2,490-2,510)" in users_line
    assert "2,700 (2,690-2,710)" in users_line
    assert "+8.0 %" in users_line
    assert users_line.endswith("HEAD faster")
    assert text.splitlines()[-1].startswith("rule: exact two-sided Mann-Whitney")


def test_a_bad_ref_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_compare.main(["--compare", "no-such-ref-anywhere"]) == 1
    err = capsys.readouterr().err
    assert err == "bench --compare: not a commit in this repository: 'no-such-ref-anywhere'\n"
