"""The ``migrator`` entry point: the parser made of every job's sub-commands, and the errors.

Heavy imports (Faust, asyncpg, Kafka clients) happen inside the sub-commands that need them, so
``migrator stack status`` answers instantly and a missing optional piece breaks only its command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from streams.cli import (
    audit,
    control,
    database,
    enqueue,
    preflight,
    replay,
    resync,
    rollback,
    runs,
    service,
    stack,
    stats,
    validate,
    verify,
)
from streams.cli.errors import Parser, fail, one_line

Handler = Callable[[argparse.Namespace], int]

OPERATOR_PATH = """the operator's path:
  migrator preflight                                 before a rollout: ✓/✗, exit 1 on a blocker
  migrator enqueue --run canary --percent 1 --execute  a staged rollout: 1 % first
  migrator runs show canary                          look: done, failed by code, rate
  migrator control pause --reason "..."              stop every worker within 2 s
  migrator enqueue --file cohort-1.csv --execute     migrate a cohort
  migrator stats                                     watch it
  migrator rollback --file cohort-1.csv --execute    take it back
  migrator replay --execute                          replay what failed
  migrator validate USER_ID                          check one user end to end
  migrator audit                                     every request answered exactly once?
  migrator replay --unanswered --execute             publish again what was never answered
  migrator resync-redis --execute                    rebuild the Redis mirror
  migrator verify --json report.json                 everyone checked end to end (users/s)
  migrator verify --rerun report.json --repair --execute   repair what it found
  migrator verify --rerun report.json                prove the repair

every command plans first and changes nothing without --execute; `migrator COMMAND --help`
"""

# In the order ``migrator --help`` lists them: run, prepare, move users, look.
JOBS = (
    service,
    stack,
    database,
    preflight,
    enqueue,
    rollback,
    replay,
    validate,
    verify,
    resync,
    stats,
    runs,
    control,
    audit,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="migrator",
        description="Onboarding migration service: worker and operator tools.",
        epilog=OPERATOR_PATH,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    for job in JOBS:
        job.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from agents.jobs.schema import SchemaDrift
    from streams.cli.stack import stack_errors
    from streams.connections import DependencyUnavailable
    from streams.settings import SettingsError
    from streams.topic_admin import TopicMismatch

    # What a user causes or cures (a bad setting, a server down): one line, exit code 2.
    refusals: tuple[type[Exception], ...] = (
        SettingsError,
        DependencyUnavailable,
        SchemaDrift,
        TopicMismatch,
        *stack_errors(),
    )
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except refusals as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`migrator stats | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        message = one_line(exc)
        if message is None:
            raise
        return fail(message)


if __name__ == "__main__":
    sys.exit(main())
