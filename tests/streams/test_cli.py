"""The command line's shape: every job module is wired in, ids and times parse as documented."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import streams.cli
from streams.cli.errors import CliError
from streams.cli.main import JOBS, build_parser
from streams.cli.output import parse_time
from streams.cli.selection import read_ids


def test_every_job_module_registers_its_commands() -> None:
    with_register = {
        name
        for _, name, _ in pkgutil.iter_modules(streams.cli.__path__)
        if not name.startswith("_")
        and hasattr(importlib.import_module(f"streams.cli.{name}"), "register")
    }
    assert with_register == {job.__name__.rpartition(".")[2] for job in JOBS}


def test_every_command_has_help_text() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    listed = {choice.dest: choice.help for choice in commands._choices_actions}
    assert set(listed) == set(commands.choices)
    assert all(listed.values()), listed


def test_ids_come_from_options_and_files_in_order_each_once(tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# cohort 1\nu3\n\nu1\n  u4  \n", encoding="utf-8")
    args = argparse.Namespace(ids=["u1,u2", " u3 "], file=str(ids_file))
    assert read_ids(args) == ["u1", "u2", "u3", "u4"]
    assert read_ids(argparse.Namespace(ids=None, file=None)) is None


def test_a_csv_file_gives_its_first_column_and_its_header_is_skipped(tmp_path: Path) -> None:
    csv = tmp_path / "cohort.csv"
    csv.write_text('user_id,segment\n"u1",a\nu2,b\n', encoding="utf-8")
    assert read_ids(argparse.Namespace(ids=None, file=str(csv))) == ["u1", "u2"]


def test_a_bad_id_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("u1\nu2\nbad id!\n", encoding="utf-8")
    with pytest.raises(CliError, match=r"ids.txt, line 3: 'bad id!' is not a user id"):
        read_ids(argparse.Namespace(ids=None, file=str(ids_file)))
    with pytest.raises(CliError, match=r"--ids: 'x y' is not a user id"):
        read_ids(argparse.Namespace(ids=["ok,x y"], file=None))


def test_a_file_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("müller\n".encode("latin-1"))
    with pytest.raises(CliError, match="not UTF-8 text"):
        read_ids(argparse.Namespace(ids=None, file=str(latin)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-24T10:00:00Z", datetime(2026, 11, 24, 10, tzinfo=UTC)),
        ("2026-11-24T10:00:00", datetime(2026, 11, 24, 10, tzinfo=UTC)),
        ("2026-11-24", datetime(2026, 11, 24, tzinfo=UTC)),
    ],
)
def test_times_without_a_zone_are_utc(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


def test_without_the_local_stack_its_commands_end_in_one_line() -> None:
    """As in the production image, which leaves ``streams/stack`` out."""
    code = (
        "import sys; sys.modules['streams.stack'] = None; "
        "from streams.cli.main import main; sys.exit(main(['stack', 'status']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "development tooling" in result.stderr


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((f"{parser.prog} {name}".removeprefix("migrator "), sub))
                found += _subparsers(sub)
    return found


def test_every_command_has_a_description_an_example_and_help_for_each_option() -> None:
    problems = []
    for name, sub in _subparsers(build_parser()):
        leaf = not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
        if not sub.description:
            problems.append(f"{name}: no description")
        if (
            leaf
            and "example" not in (sub.epilog or "")
            and "example" not in (sub.description or "")
        ):
            problems.append(f"{name}: no example")
        for action in sub._actions:
            if action.dest != "help" and not action.help:
                problems.append(f"{name}: {'/'.join(action.option_strings) or action.dest}")
    assert not problems, problems
