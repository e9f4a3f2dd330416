"""Where each request partition's batches may publish from: pure bookkeeping, no Kafka.

``PartitionTransactions`` (``streams.exactly_once``) owns one ``Positions`` and does the I/O
around it: the fencing, the commits that advance ``next``, the fetch that proves a hole empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agents.core.offset_ranges import OffsetRanges


@dataclass(frozen=True)
class Claim:
    """What a batch of one partition may answer: ``offsets``, the run that starts at the
    partition's next offset and has no hole (but holes proven empty); ``hole``, the first
    offsets ``[start, end)`` missing after that run and not proven empty, if any."""

    offsets: list[int]
    hole: tuple[int, int] | None = None


# A partition read again from a hole is not sent back there again for this long: records
# buffered before the seek are still arriving, and they show the same hole.
RESEEK_AFTER_S = 5.0


class Positions:
    """Which request partitions a batch may still publish for, and from which offset: pure.

    ``epoch`` changes when a rebalance begins; a batch publishes only in the epoch it began in.
    ``next`` is each partition's first offset not yet covered by a committed transaction.
    ``empty`` holds, per partition, the offsets proven to hold no record a read_committed
    consumer is given (transaction markers, aborted or compacted records): holes there are real.
    """

    def __init__(self) -> None:
        self.epoch = 0
        self.ready = False
        self.owned: set[int] = set()
        self.fenced: set[int] = set()
        self.next: dict[int, int | None] = {}
        self.empty: dict[int, OffsetRanges] = {}
        self._sought: dict[int, tuple[int, float]] = {}

    def revoke(self) -> None:
        self.epoch += 1
        self.ready = False

    def assign(self, partitions: set[int], committed: Mapping[int, int | None]) -> None:
        self.owned = set(partitions)
        self.fenced.clear()
        self._sought.clear()
        self.next = {p: committed.get(p) for p in partitions}
        self.empty = {p: ranges for p, ranges in self.empty.items() if p in partitions}
        self.ready = True

    def owns(self, partition: int, epoch: int) -> bool:
        """Whether a batch begun in ``epoch`` may still publish for ``partition``."""
        return (
            self.ready
            and epoch == self.epoch
            and partition in self.owned
            and partition not in self.fenced
        )

    def claim(self, partition: int, offsets: Iterable[int]) -> Claim:
        """The offsets of a batch to answer now, and the first hole that stops them.

        Offsets below ``next`` are stale copies still buffered from before a seek (their answers
        are on the topics already) and are left out. From ``next`` on, offsets are taken while
        each follows the previous one, or follows it across offsets proven empty; the first
        missing offset not proven empty ends the run, whether it is at the head of the batch or
        in its middle. Nothing after a hole is answered: its offset would be committed with it.
        """
        start = self.next.get(partition)
        ordered = sorted({o for o in offsets if start is None or o >= start})
        if not ordered:
            return Claim([])
        empty = self.empty.get(partition)
        if empty is not None and start is not None:
            empty.discard_below(start)
        expected = ordered[0] if start is None else start
        run: list[int] = []
        for offset in ordered:
            if offset != expected:
                unproven = empty.missing(expected, offset) if empty else [(expected, offset)]
                if unproven:
                    return Claim(run, (unproven[0][0], offset))
            run.append(offset)
            expected = offset + 1
        return Claim(run)

    def prove_empty(self, partition: int, ranges: Iterable[tuple[int, int]]) -> None:
        """Record offsets a read_committed fetch skipped: no record there will ever arrive."""
        known = self.empty.setdefault(partition, OffsetRanges())
        for start, end in ranges:
            known.add_range(start, end)

    def seek_due(self, partition: int, offset: int, now: float) -> bool:
        """Whether to read ``partition`` again from ``offset`` now: not if it was sent there
        less than ``RESEEK_AFTER_S`` ago (the records read again are still on their way)."""
        sought = self._sought.get(partition)
        if sought is not None and sought[0] == offset and now - sought[1] < RESEEK_AFTER_S:
            return False
        self._sought[partition] = (offset, now)
        return True
