"""``migrator audit``'s verdicts on what it read: pure parts (the reading runs in the e2e tests)."""

from __future__ import annotations

import pytest

from streams.cli.audit import AuditReport, _disagreement
from streams.cli.main import main


@pytest.mark.parametrize(
    ("outcome", "has_session", "legacy", "in_log", "undone_later", "check"),
    [
        ("migrated", True, "migrated", True, False, None),
        ("migrated", False, "in_progress", True, False, "migrated_without_session"),
        ("migrated", False, "in_progress", True, True, None),  # rolled back since
        ("rolled_back", False, "in_progress", True, False, None),
        ("rolled_back", True, "migrated", True, False, "rolled_back_not_restored"),
        ("rolled_back", False, "migrated", True, False, "rolled_back_not_restored"),
        ("rolled_back", True, "migrated", True, True, None),  # migrated again since
        ("migrated", True, "migrated", False, False, "answer_not_in_audit_log"),
    ],
)
def test_an_answer_disagrees_with_postgresql_only_when_nothing_later_explains_it(
    outcome: str,
    has_session: bool,
    legacy: str,
    in_log: bool,
    undone_later: bool,
    check: str | None,
) -> None:
    assert (
        _disagreement(
            outcome,
            has_session=has_session,
            legacy=legacy,
            in_log=in_log,
            undone_later=undone_later,
        )
        == check
    )


def test_the_report_is_clean_until_a_finding_and_says_what_to_do_next() -> None:
    report = AuditReport(partitions={0: {"from": 0, "to": 10}}, requests=10, answers=10)
    report.seconds = 0.5
    assert report.clean and report.lines()[-1].startswith("clean")
    assert report.seconds_per_million == 25_000.0
    report.unanswered.add({"partition": 0, "offset": 4, "request_id": "r", "user_id": "u"})
    lines = report.lines()
    assert not report.clean and lines[-1].startswith("FINDINGS")
    assert "    partition 0 offset 4: request_id r, user_id u" in lines
    assert any("migrator replay --unanswered" in line for line in lines)
    assert report.as_dict()["unanswered"]["count"] == 1


def test_bad_arguments_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["audit", "--partition", "x"])
    assert exited.value.code == 2
    assert "'x' is not a partition number" in capsys.readouterr().err
