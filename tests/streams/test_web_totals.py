"""The sums behind ``stats?scope=local`` and ``progress``, over two partitions' counters."""

from __future__ import annotations

from typing import NamedTuple

from agents.core import counters
from agents.stores.postgres import ProgressCounts
from streams.web.totals import owned_totals, progress_answer


class TP(NamedTuple):
    topic: str
    partition: int


def part(migrated: int, failed: int, second: int) -> counters.Counters:
    total = counters.empty()
    total.update(
        requested=migrated + failed,
        migrated=migrated,
        failed=failed,
        failed_by_code={"not_migrated": failed} if failed else {},
        per_second={str(second): migrated + failed},
    )
    return total


TABLE = {"0": part(3, 1, 995), "1": part(5, 0, 996), "2": part(100, 0, 997)}


def test_local_totals_sum_the_owned_request_partitions_only() -> None:
    owned = [TP("requests", 0), TP("requests", 1), TP("other-topic", 2)]
    total = owned_totals(owned, TABLE, topic="requests", now_s=1000)
    assert (total["requested"], total["migrated"], total["failed"]) == (9, 8, 1)
    assert total["failed_by_code"] == {"not_migrated": 1}
    assert sum(total["per_second"].values()) == 9


def test_an_owned_partition_never_counted_adds_nothing() -> None:
    total = owned_totals([TP("requests", 7)], TABLE, topic="requests", now_s=1000)
    assert total == counters.combine([], now_s=1000)


def test_progress_counts_failed_for_good_as_done_and_gives_an_eta_at_the_rate() -> None:
    summary = {"rate_per_s": 50.0}
    answer = progress_answer(ProgressCounts(1000, 400, 100), summary)
    assert (answer["remaining"], answer["percent"], answer["eta_s"]) == (500, 50.0, 10.0)


def test_progress_without_a_rate_has_no_eta_and_when_done_an_eta_of_zero() -> None:
    assert progress_answer(ProgressCounts(10, 5, 0), {"rate_per_s": 0.0})["eta_s"] is None
    done = progress_answer(ProgressCounts(10, 9, 1), {"rate_per_s": 0.0})
    assert (done["remaining"], done["percent"], done["eta_s"]) == (0, 100.0, 0.0)
    assert progress_answer(ProgressCounts(0, 0, 0), {"rate_per_s": 0.0})["percent"] == 100.0
