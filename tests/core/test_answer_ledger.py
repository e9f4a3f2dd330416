"""The answer audit's pairing of request records with answers: pure."""

from __future__ import annotations

from agents.core.answer_audit import (
    DUPLICATED,
    UNANSWERED,
    Finding,
    PartitionLedger,
    RequestSeen,
    parse_replay_of,
    ranges_from_json,
    ranges_to_json,
    replay_of,
    replay_of_header,
)
from agents.core.offset_ranges import OffsetRanges


def requests(*offsets: int) -> list[RequestSeen]:
    return [RequestSeen(o) for o in offsets]


def test_every_record_answered_once_is_clean_and_the_limit_moves() -> None:
    ledger = PartitionLedger(1, audited_to=100)
    assert [ledger.answer(o) for o in (100, 101, 103)] == [None, None, None]
    # 102 is a transaction marker: not a record, so nothing to answer.
    assert ledger.judge(requests(100, 101, 103), upto=104) == ([], [])
    assert ledger.audited_to == 104 and not ledger.answered


def test_a_record_without_an_answer_is_unanswered() -> None:
    ledger = PartitionLedger(1, audited_to=363)
    for offset in (363, *range(365, 376)):
        ledger.answer(offset)
    found, _ = ledger.judge(requests(*range(363, 376)), upto=376)
    assert found == [Finding(UNANSWERED, 1, 364)]


def test_answers_ahead_of_the_limit_wait_for_their_records() -> None:
    ledger = PartitionLedger(0, audited_to=10)
    for offset in (10, 11, 12):
        ledger.answer(offset)
    assert ledger.judge(requests(10, 11), upto=12) == ([], [])
    assert 12 in ledger.answered  # the record at 12 is judged next round
    assert ledger.judge(requests(12), upto=13) == ([], [])


def test_a_second_answer_is_a_duplicate_before_or_after_its_record_was_judged() -> None:
    ledger = PartitionLedger(0, audited_to=10)
    assert ledger.answer(10) is None
    assert ledger.answer(10) == Finding(DUPLICATED, 0, 10)
    ledger.judge(requests(10), upto=11)
    assert ledger.answer(10) == Finding(DUPLICATED, 0, 10)  # below the audited limit


def test_records_outside_the_judged_range_are_left_alone() -> None:
    ledger = PartitionLedger(0, audited_to=10)
    assert ledger.judge(requests(5, 20), upto=15) == ([], [])


def test_a_replay_answered_repairs_its_original() -> None:
    ledger = PartitionLedger(2, audited_to=50)
    ledger.answer(51)
    found, repaired = ledger.judge([RequestSeen(50), RequestSeen(51, (2, 7))], upto=52)
    assert found == [Finding(UNANSWERED, 2, 50)]
    assert repaired == [(2, 7)]


def test_replay_headers_round_trip_and_junk_is_ignored() -> None:
    name, value = replay_of_header(3, 1458)
    assert replay_of([("x", b"1"), (name, value)]) == (3, 1458)
    assert replay_of(None) is None
    for junk in (b"", b"3", b"a:1", b"1:-2", None):
        assert parse_replay_of(junk) is None


def test_answered_ranges_are_stored_as_json_pairs() -> None:
    ranges = OffsetRanges([(1, 4), (9, 10)])
    assert ranges_to_json(ranges) == [[1, 4], [9, 10]]
    assert ranges_from_json(ranges_to_json(ranges)) == ranges
    assert ranges_from_json(None) == OffsetRanges()


def test_answers_to_records_below_where_the_audit_began_are_not_judged() -> None:
    # The audit began at 50: an answer to 48 read now may be its first or its second.
    ledger = PartitionLedger(0, audited_to=50, floor=50)
    assert ledger.answer(48) is None and 48 not in ledger.answered
    assert ledger.answer(50) is None
    assert ledger.answer(50) == Finding(DUPLICATED, 0, 50)
