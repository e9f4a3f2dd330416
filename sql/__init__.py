"""SQL kept as SQL: numbered DDL in ``ddl/``, the adapters' statements in ``queries/``.

This directory is a package only so that the ``.sql`` files ship inside the wheel and are read
with ``importlib.resources`` wherever the service is installed.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def query(name: str) -> str:
    """The text of ``queries/<name>.sql``, read once per process."""
    return resources.files(__name__).joinpath("queries", f"{name}.sql").read_text("utf-8")


def ddl_files() -> list[tuple[int, str, str]]:
    """``(version, file name, text)`` of every DDL file, in the order they must be applied."""
    folder = resources.files(__name__).joinpath("ddl")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text("utf-8")))
    return sorted(found)
