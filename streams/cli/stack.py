"""``migrator stack up|down|status``: the local Kafka, PostgreSQL and Redis for development."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


class StackNotInstalled(Exception):
    """This installation has no local stack (the production image leaves it out)."""


def stack_errors() -> tuple[type[Exception], ...]:
    """The errors of the stack commands that end in one line (``StackError`` if installed)."""
    try:
        from streams.stack import StackError
    except ImportError:
        return (StackNotInstalled,)
    return (StackError, StackNotInstalled)


# The names of ``streams.stack.kafka.TOOLS``, spelled here because the stack may be absent
# (the production image leaves it out) while ``migrator --help`` must still work.
KAFKA_TOOLS = (
    "topics",
    "consumer-groups",
    "console-consumer",
    "console-producer",
    "get-offsets",
    "transactions",
    "configs",
)


def _stack() -> Any:
    try:
        from streams import stack
    except ImportError as exc:
        raise StackNotInstalled(
            "the local stack is development tooling and is not installed here "
            "(the production image leaves it out); use a checkout with `make install`"
        ) from exc
    return stack


def _up(args: argparse.Namespace) -> int:
    stack = _stack()
    ports = stack.up(Path(args.dir), brokers=args.brokers)
    print("\n".join(stack.exports(ports)))
    return 0


def _down(args: argparse.Namespace) -> int:
    stack = _stack()

    stopped = stack.down(Path(args.dir))
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    stack = _stack()

    rows = stack.status(Path(args.dir))
    for row in rows:
        state = "answers" if row.answers else ("running, not answering" if row.pid else "stopped")
        pid = row.pid if row.pid is not None else "-"
        print(f"{row.name:<9} pid={pid:<8} port={row.port:<6} {state}")
    return 0 if all(row.answers for row in rows) else 1


def _kafka_cli(args: argparse.Namespace) -> int:
    import os
    import subprocess

    from streams.settings import Settings

    kafka = _stack().kafka
    extra = list(args.args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    if "--bootstrap-server" not in extra:
        servers = ",".join(Settings.from_env().kafka_bootstrap_servers)
        extra = ["--bootstrap-server", servers, *extra]
    return subprocess.run(kafka.tool_command(args.tool, extra), env=os.environ).returncode


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "stack",
        help="local Kafka, PostgreSQL and Redis (development)",
        description="Real servers as local processes, for development, tests and the demo.",
        epilog='example:\n  eval "$(migrator stack up)"   start and export the three URLs',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stack_commands = parser.add_subparsers(
        dest="stack_command", required=True, metavar="SUBCOMMAND", help="what to do"
    )
    tools = stack_commands.add_parser(
        "kafka-cli",
        help="run one of Kafka's own tools against KAFKA_BROKER_URL",
        description="Kafka's command-line tools from the class path the stack downloaded; "
        "--bootstrap-server is added from KAFKA_BROKER_URL unless given.",
        epilog="examples:\n"
        "  migrator stack kafka-cli topics --describe --topic user-migration-requested\n"
        "  migrator stack kafka-cli consumer-groups --describe --group onboarding-migrator\n"
        "  migrator stack kafka-cli console-consumer --topic user-migration-failed "
        "--from-beginning --isolation-level read_committed --max-messages 5\n"
        "  migrator stack kafka-cli console-producer --topic user-migration-requested "
        "--property parse.key=true --property key.separator=' '   (lines: KEY JSON)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tools.add_argument(
        "tool",
        choices=KAFKA_TOOLS,
        help="kafka-topics, kafka-consumer-groups, … without the kafka- prefix",
    )
    tools.add_argument("args", nargs=argparse.REMAINDER, help="the tool's own arguments")
    tools.set_defaults(handler=_kafka_cli)
    for name, handler, text, example in (
        (
            "up",
            _up,
            "start the stack (idempotent) and print export lines",
            'eval "$(migrator stack up)"',
        ),
        ("down", _down, "stop this stack's processes, and only them", "migrator stack down"),
        (
            "status",
            _status,
            "what runs and whether it answers (exit 1 if one does not)",
            "migrator stack status --dir .stack/test",
        ),
    ):
        sub = stack_commands.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ".",
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("--dir", default=".stack", help="stack directory (default: .stack)")
        if name == "up":
            sub.add_argument(
                "--brokers",
                type=int,
                default=None,
                metavar="N",
                help="Kafka brokers, 1-5 (default: as the stack was made, else 1); 3 makes a "
                "KRaft cluster with topics replicated 3 times, min.insync.replicas=2",
            )
        sub.set_defaults(handler=handler)
