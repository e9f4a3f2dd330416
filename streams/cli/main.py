"""The ``migrator`` entry point: the parser made of every job's sub-commands, and the errors.

Heavy imports (Faust, asyncpg, Kafka clients) happen inside the sub-commands that need them, so
``migrator stack status`` answers instantly and a missing optional piece breaks only its command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from streams.cli import database, enqueue, replay, resync, service, stack, stats, validate

Handler = Callable[[argparse.Namespace], int]

# In the order ``migrator --help`` lists them: run, prepare, move users, look.
JOBS = (service, stack, database, enqueue, replay, validate, resync, stats)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migrator", description="Onboarding migration service: worker and operator tools."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for job in JOBS:
        job.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from agents.jobs.schema import SchemaDrift
    from streams.cli.stack import stack_errors
    from streams.connections import DependencyUnavailable
    from streams.settings import SettingsError

    # What a user causes or cures (a bad setting, a server down): one line, exit code 2.
    refusals: tuple[type[Exception], ...] = (
        SettingsError,
        DependencyUnavailable,
        SchemaDrift,
        *stack_errors(),
    )
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except refusals as exc:
        print(f"migrator: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
