"""Sets of Kafka offsets kept as sorted half-open ranges: pure.

A partition's offsets come in long runs (every record answered, every offset a record), so a
set of a million offsets is usually a handful of ranges. The hole guard keeps the ranges it
proved empty with one; the answer audit keeps the offsets it has seen answered with one, which
is what lets ``migrator audit`` read a topic of any length in bounded memory.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator


class OffsetRanges:
    """A set of non-negative integers as disjoint, sorted, non-adjacent ``[start, end)`` ranges."""

    __slots__ = ("_starts", "_ends")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in ranges:
            self.add_range(start, end)

    def __contains__(self, offset: object) -> bool:
        if not isinstance(offset, int):
            return False
        i = bisect_right(self._starts, offset) - 1
        return i >= 0 and offset < self._ends[i]

    def __len__(self) -> int:
        """How many offsets (not ranges) the set holds."""
        return sum(end - start for start, end in zip(self._starts, self._ends, strict=True))

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __iter__(self) -> Iterator[int]:
        for start, end in self.ranges():
            yield from range(start, end)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OffsetRanges) and self.ranges() == other.ranges()

    def __repr__(self) -> str:
        return f"OffsetRanges({self.ranges()!r})"

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    @property
    def span_count(self) -> int:
        """How many ranges: what the set costs in memory."""
        return len(self._starts)

    def add(self, offset: int) -> None:
        self.add_range(offset, offset + 1)

    def add_range(self, start: int, end: int) -> None:
        if end <= start:
            return
        # The ranges touching or overlapping [start, end) are merged into one.
        lo = bisect_left(self._ends, start)
        hi = bisect_right(self._starts, end)
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    def covers(self, start: int, end: int) -> bool:
        """Whether every offset of ``[start, end)`` is in the set (true for an empty range)."""
        if end <= start:
            return True
        i = bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def discard_below(self, offset: int) -> None:
        """Forget every offset below ``offset``."""
        i = bisect_right(self._ends, offset)
        del self._starts[:i], self._ends[:i]
        if self._starts and self._starts[0] < offset:
            self._starts[0] = offset

    def missing(self, start: int, end: int) -> list[tuple[int, int]]:
        """The ranges of ``[start, end)`` that the set does not hold."""
        holes: list[tuple[int, int]] = []
        cursor = start
        i = max(bisect_right(self._starts, start) - 1, 0)
        while cursor < end and i < len(self._starts):
            s, e = self._starts[i], self._ends[i]
            if e <= cursor:
                i += 1
                continue
            if s >= end:
                break
            if s > cursor:
                holes.append((cursor, s))
            cursor = max(cursor, e)
            i += 1
        if cursor < end:
            holes.append((cursor, end))
        return holes
