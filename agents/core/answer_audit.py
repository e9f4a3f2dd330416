"""The answer ledger audit: every request record has exactly one answer. Pure.

Each answer (an outcome or a dead letter) names the request record it answers in its headers
(``migrator-original-partition`` and ``-offset``), and answers go to the request's partition.
So one request partition is audited by reading its records and the answers of the same
partition of the answer topics, and pairing them by offset:

- a request record below the audited limit with no answer is **unanswered**;
- an answer to a record that already had one is **duplicated**;
- a record published by ``migrator replay --unanswered`` names the record it replays
  (``migrator-replay-of: partition:offset``); once it is answered, the original is **repaired**.

The worker's audit runs this incrementally (its state is a few numbers and ranges in
PostgreSQL); ``migrator audit`` runs it once over a range. Memory is a handful of offset ranges
per partition (``OffsetRanges``), whatever the length of the topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from agents.core.offset_ranges import OffsetRanges

UNANSWERED = "unanswered"
DUPLICATED = "duplicated"
KINDS = (UNANSWERED, DUPLICATED)

REPLAY_OF_HEADER = "migrator-replay-of"


@dataclass(frozen=True)
class RequestSeen:
    """A request record as the audit needs it."""

    offset: int
    replay_of: tuple[int, int] | None = None


@dataclass(frozen=True)
class Finding:
    kind: str
    partition: int
    offset: int


@dataclass
class PartitionLedger:
    """One request partition's audit position.

    ``audited_to``: every request record below it has been judged. ``answered``: the offsets at
    or above it that answers were seen for (answers run ahead of the audited limit). ``floor``:
    where the audit began; answers to records below it are not judged (their first answers
    were never counted, so a second one could not be told from a first).
    """

    partition: int
    audited_to: int
    answered: OffsetRanges = field(default_factory=OffsetRanges)
    floor: int = 0

    def answer(self, offset: int) -> Finding | None:
        """Count one answer naming ``offset``; a duplicate is a finding."""
        if offset < self.floor:
            return None
        if offset < self.audited_to or offset in self.answered:
            return Finding(DUPLICATED, self.partition, offset)
        self.answered.add(offset)
        return None

    def judge(
        self, requests: Iterable[RequestSeen], upto: int
    ) -> tuple[list[Finding], list[tuple[int, int]]]:
        """Judge the request records of ``[audited_to, upto)`` (``requests``: all of them, in
        any order; offsets outside are ignored) against the answers counted so far, then move
        the audited limit to ``upto``. Returns the unanswered findings and the records repaired
        (``(partition, offset)`` of originals whose replay is answered)."""
        findings: list[Finding] = []
        repaired: list[tuple[int, int]] = []
        for request in requests:
            if not self.audited_to <= request.offset < upto:
                continue
            if request.offset in self.answered:
                if request.replay_of is not None:
                    repaired.append(request.replay_of)
            else:
                findings.append(Finding(UNANSWERED, self.partition, request.offset))
        self.advance(upto)
        return findings, repaired

    def advance(self, upto: int) -> None:
        if upto > self.audited_to:
            self.audited_to = upto
            self.answered.discard_below(upto)


def parse_replay_of(value: bytes | None) -> tuple[int, int] | None:
    """``b"1:364"`` → ``(1, 364)``; None for anything else."""
    if not value:
        return None
    partition, sep, offset = value.decode("utf-8", "replace").partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        return None
    return int(partition), int(offset)


def replay_of_header(partition: int, offset: int) -> tuple[str, bytes]:
    return REPLAY_OF_HEADER, f"{partition}:{offset}".encode()


def replay_of(headers: Sequence[tuple[str, bytes | None]] | None) -> tuple[int, int] | None:
    for name, value in headers or ():
        if name == REPLAY_OF_HEADER:
            return parse_replay_of(value)
    return None


def ranges_to_json(ranges: OffsetRanges) -> list[list[int]]:
    return [[start, end] for start, end in ranges.ranges()]


def ranges_from_json(value: object) -> OffsetRanges:
    if not isinstance(value, list):
        return OffsetRanges()
    return OffsetRanges((int(pair[0]), int(pair[1])) for pair in value)
