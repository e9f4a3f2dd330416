"""``migrator control``: pause, resume and throttle every worker at once, at run time.

Writes the compacted control topic every worker reads (``<app id>-control``): a pause takes
effect within 2 s on every worker (each finishes and commits the batch in hand, then takes no
more requests; the consumer group does not rebalance), a throttle caps the cluster's users/s.
Both hold across worker restarts until changed. ``status`` prints what the topic says.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import socket
import time
from typing import Any

from agents.core import control_state
from agents.core.control_state import MAX_RATE, MIN_RATE
from streams.cli.errors import CliError
from streams.settings import Settings

EXAMPLES = """examples:
  migrator control status
  migrator control pause --reason "canary: 3 % invalid_legacy_data, looking" --wait
  migrator control resume
  migrator control throttle --rate 200          at most 200 users/s across all workers
  migrator control throttle --off
"""


def _write(key: str, value: dict[str, Any]) -> int:
    from streams.control_topic import publish_control, read_control

    settings = Settings.from_env()
    asyncio.run(publish_control(settings, key, value))
    state = asyncio.run(read_control(settings))
    print(state.summary())
    return 0


def _status(args: argparse.Namespace) -> int:
    from streams.control_topic import read_control

    state = asyncio.run(read_control(Settings.from_env()))
    print(json.dumps(state.as_dict(), indent=2) if args.json else state.summary())
    return 0


def _pause(args: argparse.Namespace) -> int:
    from streams.control_topic import pause_value

    _write(control_state.PAUSE, pause_value(paused=True, reason=args.reason, by=args.by))
    return _confirm(paused=True, within_s=args.wait)


def _resume(args: argparse.Namespace) -> int:
    from streams.control_topic import pause_value

    _write(control_state.PAUSE, pause_value(paused=False, reason=args.reason, by=args.by))
    return _confirm(paused=False, within_s=args.wait)


def _confirm(*, paused: bool, within_s: float | None) -> int:
    """With ``--wait``: until every live worker reports the change applied (workers report
    every 2 s to ``worker_status``); one line naming those that did not."""
    if within_s is None:
        return 0
    from agents.stores import postgres
    from streams.connections import opened

    settings = Settings.from_env()
    word = "paused" if paused else "taking requests"

    async def lagging() -> tuple[int, list[str]]:
        async with opened(settings) as (pool, _):
            deadline = time.monotonic() + within_s
            while True:
                rows = await postgres.worker_statuses(pool, settings.app_id, within_s=15)
                behind = [r["worker"] for r in rows if bool(r["paused"]) != paused]
                if not behind or time.monotonic() > deadline:
                    return len(rows), behind
                await asyncio.sleep(0.5)

    workers, behind = asyncio.run(lagging())
    if behind:
        line = (
            f"{len(behind)} of {workers} worker(s) not {word} after {within_s:g} s: "
            + ", ".join(behind)
        )
        if not paused:
            # Most often a worker paused everyone again (a failure budget still spent, an
            # outage): say who, when and why, as `control status` would.
            from streams.control_topic import read_control

            state = asyncio.run(read_control(settings))
            if state.paused:
                line = f"resumed, but {state.summary()}; {line}"
        raise CliError(line)
    print(f"{workers} worker(s) {word}")
    return 0


def _throttle(args: argparse.Namespace) -> int:
    from streams.control_topic import throttle_value

    return _write(
        control_state.THROTTLE, throttle_value(rate=None if args.off else args.rate, by=args.by)
    )


def _rate(value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not MIN_RATE <= rate <= MAX_RATE:
        raise argparse.ArgumentTypeError(
            f"{value} is not a rate in [{MIN_RATE:g}, {MAX_RATE:g}] users/s "
            "(below 1 user/s, pause instead: migrator control pause)"
        )
    return rate


def operator_name() -> str:
    """Who is at the keyboard, for ``by`` (``user@host``)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "control",
        help="pause, resume or throttle every worker at once (run time)",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(
        dest="verb", required=True, metavar="VERB", parser_class=type(parser), help="what to do"
    )

    def verb(name: str, help: str, handler: Any) -> argparse.ArgumentParser:
        examples = "\n".join(line for line in EXAMPLES.splitlines() if f"control {name}" in line)
        sub: argparse.ArgumentParser = verbs.add_parser(
            name,
            help=help,
            description=help,
            epilog=f"examples:\n{examples}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("--by", default=operator_name(), help="who does it (default: user@host)")
        sub.set_defaults(handler=handler)
        return sub

    status = verb("status", "what the control topic says now: paused or running, throttle", _status)
    status.add_argument("--json", action="store_true", help="print JSON")
    pause = verb("pause", "every worker finishes its batch in hand and takes no more", _pause)
    pause.add_argument("--reason", help="why: shown in health, stats, /metrics, the dashboard")
    resume = verb("resume", "every worker takes requests again (also after an auto-pause)", _resume)
    resume.add_argument("--reason", help="why it is safe to go on")
    for sub in (pause, resume):
        sub.add_argument(
            "--wait",
            type=float,
            nargs="?",
            const=10.0,
            metavar="S",
            help="then wait (10 s, or S) until every live worker reports it applied",
        )
    throttle = verb(
        "throttle", "cap the cluster's rate in users/s (shared by the workers)", _throttle
    )
    rate = throttle.add_mutually_exclusive_group(required=True)
    rate.add_argument("--rate", type=_rate, metavar="N", help="at most N users/s in all")
    rate.add_argument("--off", action="store_true", help="lift the throttle")
