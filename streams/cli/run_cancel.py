"""``migrator runs cancel NAME``: the run's requests not answered yet are answered, in order,
``failed`` with the code ``cancelled``, touching no user (no session, no legacy row change).

A plan by default: the run's figures (its requests not yet answered, by its counts in
PostgreSQL), the request backlog, whether the cluster is paused. ``--execute`` writes the record
``cancel:NAME`` to the control topic every worker follows, with the request topic's end offsets
at that moment: the run's records below them that are not answered yet are answered
``cancelled``; records of the run published later (a ``migrator replay``, which can bring the
cancelled ones back: the code is retryable) are processed as usual. A paused cluster stays
paused: the cancelled requests are answered once it resumes.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace
from typing import Any

from agents.core.cohorts import RunSummary
from agents.core.control_state import ControlState, cancel_key
from streams import topics
from streams.cli.errors import CliError
from streams.settings import Settings

EXAMPLES = """examples:
  migrator runs cancel wave-2                          plan: what a cancel would answer
  migrator runs cancel wave-2 --reason "wrong cohort" --execute
  migrator replay --code cancelled --execute           bring the cancelled requests back
"""

WHAT_A_CANCEL_DOES = (
    "a cancel: every worker answers the run's requests published before it and not answered "
    "yet failed/cancelled, in order, touching no user (no session, no legacy row change); "
    "requests of the run published after it are processed as usual; the code is retryable: "
    "`migrator replay --code cancelled` brings them back"
)


def nothing_left(run: RunSummary) -> str | None:
    """Why there is nothing to cancel (every request of the run is answered), or None."""
    if run.all_answered:
        return (
            f"run {run.run_id}: all its {run.requested} request(s) are answered: "
            "nothing left to cancel"
        )
    return None


def plan_lines(run: RunSummary, control: ControlState, backlog: int | None) -> list[str]:
    """What ``runs cancel`` shows before it writes anything. Pure."""
    lines = [
        f"run {run.run_id}: {run.state}, created {run.created_at.isoformat()} by {run.created_by}",
        f"  requested   {run.migrate_requested} migrate, {run.rollback_requested} rollback",
        f"  answered    {run.answered}: {run.migrated} migrated, {run.failed} failed, "
        f"{run.rolled_back} rolled back, {run.rollback_failed} rollback failures",
        f"  unanswered  {run.remaining}: to be answered cancelled (the run's counts in "
        "PostgreSQL; what workers answer before the cancel reaches them stays answered)",
    ]
    if backlog is not None:
        lines.append(
            f"  backlog     {backlog} request record(s) of every run wait in {topics.REQUESTED}"
        )
    earlier = control.cancels.get(run.run_id)
    if earlier is not None:
        lines.append(
            f"  already cancelled at {earlier.at} by {earlier.by}: cancelling again also "
            "cancels the run's requests published since"
        )
    if control.paused:
        lines.append(f"  cluster     {control.summary()}")
    lines.append(WHAT_A_CANCEL_DOES)
    return lines


def done_lines(run_id: str, value: dict[str, Any], control: ControlState, app_id: str) -> list[str]:
    """What ``runs cancel --execute`` says once the record is written. Pure."""
    lines = [
        f"run {run_id} cancelled at {value['at']} by {value['by']} "
        f"({topics.control_topic(app_id)}, key {cancel_key(run_id)})",
        "every worker answers its requests published before now and not answered yet "
        "failed/cancelled, touching no user",
    ]
    if control.paused:
        lines.append(
            f"the cluster is {control.summary()}: they are answered once it resumes "
            "(`migrator control resume`), still without touching any user"
        )
    lines.append(f"follow it: migrator runs show {run_id}")
    return lines


def cancel(args: argparse.Namespace) -> int:
    from streams.control_topic import cancel_value, publish_control, read_control, request_ends

    settings = Settings.from_env()
    figures = asyncio.run(_summary(settings, args.name))
    if figures is None:
        raise CliError(f"no run named {args.name!r}: see `migrator runs`")
    control = asyncio.run(read_control(settings))
    found = replace(figures, cancel=control.cancels.get(figures.run_id))
    left = nothing_left(found)
    if left is not None:
        print(left)
        if args.execute:
            print("nothing was written")
        return 0
    for line in plan_lines(found, control, asyncio.run(_backlog(settings))):
        print(line)
    if not args.execute:
        print(f"nothing was written: add --execute to cancel run {found.run_id}")
        return 0

    async def write() -> dict[str, Any]:
        value = cancel_value(
            run_id=found.run_id,
            by=args.by,
            reason=args.reason,
            before=await request_ends(settings),
        )
        await publish_control(settings, cancel_key(found.run_id), value)
        return value

    written = asyncio.run(write())
    for line in done_lines(found.run_id, written, control, settings.app_id):
        print(line)
    return 0


async def _summary(settings: Settings, name: str) -> RunSummary | None:
    from datetime import UTC, datetime

    from agents.stores.runs import run_summaries
    from streams.connections import opened

    async with opened(settings) as (pool, _):
        found = await run_summaries(pool, now=datetime.now(UTC), run_ids=[name], limit=1)
    return found[0] if found else None


async def _backlog(settings: Settings) -> int | None:
    """Request records not answered yet, every run together (None if Kafka does not say: the
    figure only informs the plan)."""
    from streams.control_topic import request_ends
    from streams.group_offsets import GroupOffsets

    offsets = GroupOffsets(settings.kafka_bootstrap_servers, settings.app_id)
    try:
        ends = await request_ends(settings)
        committed = await offsets.committed()
    except Exception:  # noqa: BLE001 - the plan says "unknown" rather than failing
        return None
    finally:
        await offsets.close()
    return sum(max(0, end - committed.get(p, 0)) for p, end in ends.items())


def add_verb(verbs: Any, operator: str) -> None:
    """``runs cancel``, among ``runs``'s verbs; ``operator`` is the default ``--by``."""
    parser = verbs.add_parser(
        "cancel",
        help="answer the run's requests not yet answered failed/cancelled, touching no user",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from streams.cli.requests import run_name

    parser.add_argument("name", type=run_name, help="the run's name")
    parser.add_argument("--reason", help="why: in each cancelled answer and in `runs show`")
    parser.add_argument("--by", default=operator, help="who cancels (default: user@host)")
    parser.add_argument(
        "--execute", action="store_true", help="write the cancel (default: print the plan only)"
    )
    parser.set_defaults(handler=cancel)
