"""``migrator runs``: the staged rollouts, their figures, and a run's report of failed users.

Read from PostgreSQL (the audit log is the truth), so it answers with no worker running; which
runs were cancelled is the control topic's. ``runs`` lists the latest runs; ``runs show NAME``
tells one in full; ``runs report NAME`` writes every user whose latest answer in the run is a
failure, as CSV or JSON; ``runs cancel NAME`` answers its queued requests ``cancelled``
(``streams.cli.run_cancel``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from agents.core.cohorts import RunSummary, shown_state, write_report
from agents.core.control_state import ControlState, RunCancel
from streams.cli import run_cancel
from streams.cli.control import operator_name
from streams.cli.errors import CliError, one_line
from streams.cli.requests import run_name
from streams.cli.status_line import duration
from streams.settings import Settings

EXAMPLES = """examples:
  migrator runs                                   the latest runs, one line each
  migrator runs show canary                       one run in full (--json for JSON)
  migrator runs report canary --out canary.csv    its failed users, with codes (CSV)
  migrator runs report canary --format json
  migrator runs cancel wave-2 --execute           answer its queued requests cancelled
"""


def _list(args: argparse.Namespace) -> int:
    runs, control = asyncio.run(_summaries(None, args.limit))
    states = _states(runs, control)
    if args.json:
        print(
            json.dumps([{**run.as_dict(), "state": states[run.run_id]} for run in runs], indent=2)
        )
        return 0
    if not runs:
        print("no runs yet: start one with `migrator enqueue --run NAME --percent 1 --execute`")
        return 0
    print(
        f"{'RUN':<24} {'STATE':<11} {'REQUESTED':>9} {'DONE':>9} {'MIGRATED':>9} "
        f"{'FAILED':>7} {'ROLLED BACK':>11} {'RATE/S':>7}  ETA"
    )
    for run in runs:
        print(
            f"{run.run_id:<24} {states[run.run_id]:<11} {run.migrate_requested:>9} "
            f"{run.migrate_answered:>9} {run.migrated:>9} {run.failed:>7} {run.rolled_back:>11} "
            f"{run.rate_per_s:>7.1f}  {_eta(run)}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    run, control = _one(args.name)
    state = _states([run], control)[run.run_id]
    if args.json:
        print(json.dumps({**run.as_dict(), "state": state}, indent=2))
        return 0
    figures = run.as_dict()
    print(f"run {run.run_id}: {state}")
    print(f"  created     {figures['created_at']} by {run.created_by}")
    print(f"  started     {figures['started_at'] or '-'}")
    print(f"  finished    {figures['finished_at'] or '-'}")
    if run.cancel is not None:
        why = f": {run.cancel.reason}" if run.cancel.reason else ""
        print(f"  cancelled   {run.cancel.at} by {run.cancel.by}{why}")
    print(f"  requested   {run.migrate_requested} migrate, {run.rollback_requested} rollback")
    print(
        f"  done        {run.migrate_answered} of {run.migrate_requested}: "
        f"{run.migrated} migrated, {run.failed} failed"
    )
    for code, count in sorted(run.failed_by_code.items()):
        print(f"    {code:<24} {count}")
    print(f"  rolled back {run.rolled_back} ({run.rollback_failed} rollback failures)")
    print(f"  rate        {_rate(run)}")
    for selection in run.selections:
        print(f"  selection   {json.dumps(selection, sort_keys=True)}")
    print(f"  verified    {_verified(run)}")
    if run.failed:
        print(f"  report      migrator runs report {run.run_id} --out {run.run_id}-failed.csv")
    return 0


def _report(args: argparse.Namespace) -> int:
    rows = asyncio.run(_failures(args.name))
    if rows is None:  # an unknown run is an error, not an empty report
        raise CliError(f"no run named {args.name!r}: see `migrator runs`")
    out: IO[str]
    to_file = bool(args.out) and args.out != "-"
    if to_file:
        try:
            out = Path(args.out).open("w", encoding="utf-8", newline="")
        except OSError as exc:
            raise CliError(f"{args.out}: {exc.strerror}") from None
    else:
        out = sys.stdout
    try:
        write_report(rows, args.format, out)
    finally:
        if out is not sys.stdout:
            out.close()
    if to_file:
        print(f"{len(rows)} failed user(s) of run {args.name} written to {args.out}")
    return 0


def _verified(run: RunSummary) -> str:
    last = run.verified
    if last is None:
        return f"never: migrator verify --run {run.run_id}"
    result = (
        "OK, every check holds"
        if last["ok"]
        else f"MISMATCHES for {last['mismatched']} user(s): "
        + ", ".join(f"{check} {n}" for check, n in sorted(last["by_check"].items()))
    )
    return f"{last['at']} (verification {last['verify_id']}), {last['checked']} user(s): {result}"


def _rate(run: RunSummary) -> str:
    if run.state == "finished":
        took = duration(run.elapsed_s)
        return f"took {took}, {run.rate_per_s:.1f}/s on average"
    return f"{run.rate_per_s:.1f}/s over the last 10 s, ETA {_eta(run)}"


def _states(runs: list[RunSummary], control: ControlState | None) -> dict[str, str]:
    """Each run's state as shown: "paused" / "auto-paused" while the cluster is and the run is
    neither finished nor cancelled (the control topic unread: the runs' own states)."""
    return {
        run.run_id: shown_state(
            run.state,
            paused=bool(control and control.paused),
            auto=bool(control and control.auto),
        )
        for run in runs
    }


def _eta(run: RunSummary) -> str:
    if run.finished_at is not None:  # finished, or cancelled and all answered
        return "done"
    if run.eta_s is None:
        return "-"
    minutes, seconds = divmod(int(run.eta_s), 60)
    return f"{minutes}m{seconds:02d}s"


def _one(name: str) -> tuple[RunSummary, ControlState | None]:
    found, control = asyncio.run(_summaries([name], 1))
    if not found:
        raise CliError(f"no run named {name!r}: see `migrator runs`")
    return found[0], control


async def _summaries(
    names: list[str] | None, limit: int
) -> tuple[list[RunSummary], ControlState | None]:
    """The runs' figures (PostgreSQL's) with their cancels, and the control state they are
    shown under (None when Kafka is away: said on stderr, the figures are still shown)."""
    from agents.stores.runs import run_summaries
    from streams.connections import opened

    settings = Settings.from_env()
    async with opened(settings) as (pool, _):
        found = await run_summaries(pool, now=datetime.now(UTC), run_ids=names, limit=limit)
    if not found:
        return found, None
    control = await _control(settings)
    cancels: Mapping[str, RunCancel] = control.cancels if control is not None else {}
    return [replace(run, cancel=cancels.get(run.run_id)) for run in found], control


async def _control(settings: Settings) -> ControlState | None:
    from streams.control_topic import read_control

    try:
        return await read_control(settings, timeout_s=5)
    except Exception as exc:  # noqa: BLE001 - only the pause and the cancels are missing then
        print(f"(pause and cancelled runs unknown: {one_line(exc) or exc})", file=sys.stderr)
        return None


async def _failures(name: str) -> list[dict[str, Any]] | None:
    from agents.stores.runs import run_failures
    from streams.connections import opened

    async with opened(Settings.from_env()) as (pool, _):
        return await run_failures(pool, name)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "runs",
        help="staged rollouts: list them, show one, export its failed users",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--limit", type=int, default=20, metavar="N", help="how many runs to list (20)"
    )
    parser.set_defaults(handler=_list)
    verbs = parser.add_subparsers(
        dest="verb", metavar="VERB", parser_class=type(parser), help="(default: list the runs)"
    )
    show = verbs.add_parser(
        "show",
        help="one run in full",
        description="One run's figures: requested, done, failed by code, rolled back, rate, "
        "ETA, started and finished.",
        epilog="examples:\n  migrator runs show canary\n  migrator runs show canary --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("name", type=run_name, help="the run's name")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_show)
    report = verbs.add_parser(
        "report",
        help="the run's failed users with their codes (CSV or JSON)",
        description="Every user whose latest answer in the run is a failure: user id, action, "
        "error code, whether retrying unchanged may succeed, message, request id, time.",
        epilog="examples:\n  migrator runs report canary --out canary-failed.csv\n"
        "  migrator runs report canary --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("name", type=run_name, help="the run's name")
    report.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default)")
    report.add_argument("--out", metavar="PATH", help="write to PATH (default, or -: stdout)")
    report.set_defaults(handler=_report)
    run_cancel.add_verb(verbs, operator_name())
