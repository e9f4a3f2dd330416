"""``OffsetRanges``: the set the hole guard and the answer audit keep offsets in."""

from __future__ import annotations

import random

from agents.core.offset_ranges import OffsetRanges


def test_adjacent_and_overlapping_ranges_merge() -> None:
    ranges = OffsetRanges([(5, 7), (1, 3)])
    ranges.add_range(3, 5)
    assert ranges.ranges() == [(1, 7)]
    ranges.add_range(10, 12)
    ranges.add(9)
    ranges.add_range(0, 2)
    assert ranges.ranges() == [(0, 7), (9, 12)]
    assert len(ranges) == 10 and ranges.span_count == 2


def test_membership_cover_and_missing() -> None:
    ranges = OffsetRanges([(10, 20), (30, 40)])
    assert 10 in ranges and 19 in ranges and 20 not in ranges and 9 not in ranges
    assert ranges.covers(12, 20) and not ranges.covers(12, 21) and ranges.covers(5, 5)
    assert ranges.missing(0, 50) == [(0, 10), (20, 30), (40, 50)]
    assert ranges.missing(15, 35) == [(20, 30)]
    assert ranges.missing(12, 18) == []


def test_discard_below_cuts_a_range_in_two() -> None:
    ranges = OffsetRanges([(10, 20), (30, 40)])
    ranges.discard_below(15)
    assert ranges.ranges() == [(15, 20), (30, 40)]
    ranges.discard_below(35)
    assert ranges.ranges() == [(35, 40)]


def test_it_agrees_with_a_plain_set_on_random_operations() -> None:
    rng = random.Random(3)
    for _ in range(200):
        ranges, plain = OffsetRanges(), set[int]()
        for _ in range(30):
            start = rng.randrange(100)
            end = start + rng.randrange(6)
            ranges.add_range(start, end)
            plain.update(range(start, end))
        assert set(ranges) == plain
        assert len(ranges) == len(plain)
        lo, hi = sorted((rng.randrange(110), rng.randrange(110)))
        missing = {o for a, b in ranges.missing(lo, hi) for o in range(a, b)}
        assert missing == set(range(lo, hi)) - plain
        assert ranges.covers(lo, hi) == (not missing)
        starts = [s for s, _ in ranges.ranges()]
        ends = [e for _, e in ranges.ranges()]
        assert all(e < s for e, s in zip(ends, starts[1:], strict=False))  # never adjacent
