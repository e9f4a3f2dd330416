"""Service sub-commands of ``migrator`` (database, data, operations); the stack lives in cli.py.

Each handler parses nothing itself: it receives argparse's namespace, builds ``Settings`` from the
environment, calls into ``agents``/``streams`` and prints. Exit code 0 is success, 1 a negative
answer (e.g. validation found problems), 2 a usage or dependency error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from streams.settings import Settings


def _db_init(args: argparse.Namespace) -> int:
    from agents.connections import connect
    from agents.schema import apply_schema

    async def run() -> int:
        conn = await connect(Settings.from_env())
        try:
            report = await apply_schema(conn)
        finally:
            await conn.close()
        for name in report.applied:
            print(f"applied  {name}")
        for name in report.already:
            print(f"present  {name}")
        return 0

    return asyncio.run(run())


def register(commands: Any) -> None:
    """Add the service's sub-commands to the ``migrator`` parser."""
    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("init", help="apply sql/ddl idempotently").set_defaults(
        handler=_db_init
    )


def fail(message: str) -> int:
    print(f"migrator: {message}", file=sys.stderr)
    return 2
