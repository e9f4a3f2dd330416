"""``migrator``: the one command-line entry point. It parses, calls and prints; nothing more.

Heavy imports (Faust, asyncpg, Kafka clients) happen inside the sub-commands that need them, so
``migrator stack status`` answers instantly and a missing optional piece breaks only its command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Handler = Callable[[argparse.Namespace], int]


def _stack_up(args: argparse.Namespace) -> int:
    from streams import stack

    ports = stack.up(Path(args.dir))
    print("\n".join(stack.exports(ports)))
    return 0


def _stack_down(args: argparse.Namespace) -> int:
    from streams import stack

    stopped = stack.down(Path(args.dir))
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running", file=sys.stderr)
    return 0


def _stack_status(args: argparse.Namespace) -> int:
    from streams import stack

    rows = stack.status(Path(args.dir))
    for row in rows:
        state = "answers" if row.answers else ("running, not answering" if row.pid else "stopped")
        pid = row.pid if row.pid is not None else "-"
        print(f"{row.name:<9} pid={pid:<8} port={row.port:<6} {state}")
    return 0 if all(row.answers for row in rows) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migrator", description="Onboarding migration service: worker and operator tools."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack_parser = commands.add_parser("stack", help="local Kafka, PostgreSQL and Redis")
    stack_commands = stack_parser.add_subparsers(dest="stack_command", required=True)
    for name, handler, text in (
        ("up", _stack_up, "start the stack (idempotent) and print export lines"),
        ("down", _stack_down, "stop this stack's processes"),
        ("status", _stack_status, "what runs and whether it answers"),
    ):
        sub = stack_commands.add_parser(name, help=text)
        sub.add_argument("--dir", default=".stack", help="stack directory (default: .stack)")
        sub.set_defaults(handler=handler)

    from streams import commands as service_commands

    service_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from agents.connections import DependencyUnavailable
    from agents.schema import SchemaDrift
    from streams.settings import SettingsError
    from streams.stack import StackError

    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (StackError, SettingsError, DependencyUnavailable, SchemaDrift) as exc:
        print(f"migrator: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
