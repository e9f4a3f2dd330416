"""Which users a command is about: ``--ids`` and ``--file``, checked like the HTTP API checks.

A file holds one user id per line, or a CSV whose first column is the user id; blank lines and
``#`` comments are skipped, and so is a header line (``user_id``, ``id``, ``user``). A bad id is
reported with its file and line, never skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from schemas.identifiers import USER_ID, USER_ID_RULE
from streams.cli.errors import CliError

_HEADERS = frozenset({"user_id", "userid", "user", "id"})


def add_id_options(parser: argparse.ArgumentParser, *, what: str = "users") -> None:
    parser.add_argument(
        "--ids", action="append", metavar="ID[,ID…]", help=f"{what}: comma-separated user ids"
    )
    parser.add_argument(
        "--file",
        metavar="PATH",
        help=f"{what}: one user id per line, or a CSV whose first column is the user id "
        "('-' reads stdin)",
    )


def read_ids(args: argparse.Namespace) -> list[str] | None:
    """The user ids of ``--ids`` and ``--file``, in order, each once; None if neither is given."""
    if not (args.ids or args.file):
        return None
    ids: list[str] = []
    for chunk in args.ids or []:
        ids += [check_id(part.strip(), "--ids") for part in chunk.split(",") if part.strip()]
    if args.file:
        ids += read_id_file(args.file)
    return list(dict.fromkeys(ids))


def read_id_file(path: str) -> list[str]:
    if path == "-":
        return _ids_of(sys.stdin.read().splitlines(), "stdin")
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return _ids_of(text.splitlines(), path)


def check_id(user_id: str, where: str) -> str:
    if not USER_ID.fullmatch(user_id):
        raise CliError(f"{where}: {user_id!r} is not a user id ({USER_ID_RULE})")
    return user_id


def _ids_of(lines: list[str], source: str) -> list[str]:
    ids: list[str] = []
    first = True
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        value = text.split(",", 1)[0].strip().strip('"').strip()
        if first and value.lower() in _HEADERS:
            first = False
            continue
        first = False
        ids.append(check_id(value, f"{source}, line {number}"))
    return ids
