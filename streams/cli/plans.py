"""Plans: what ``enqueue``, ``rollback`` and ``replay`` would publish, shown, saved and executed.

A plan is built once, with its request ids fixed, and what ``--execute`` publishes is that plan:
in the same run, or later from the file ``--plan-out`` wrote (``--from-plan FILE --execute``),
request for request. The file is JSON Lines: a header object, then one request per line (with
the ``trace_id`` it starts: an added field, which readers of requests ignore).

Each request starts a trace of its own, fixed by the plan like its request id
(``trace_context.planned_trace``): the plan shows the trace ids that ``--execute`` publishes in
the requests' ``traceparent`` headers, in this run or later from the plan's file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from schemas.events import MigrationRequest
from streams import topics
from streams.cli.errors import CliError
from streams.cli.output import sample_lines
from streams.settings import Settings
from streams.trace_context import TraceContext, planned_trace

PLAN_FORMAT = "migrator-plan/1"


@dataclass
class Plan:
    command: str
    requests: list[MigrationRequest]
    summary: list[str] = field(default_factory=list)  # what was selected, held out, warned
    plan_id: uuid.UUID = field(default_factory=uuid.uuid4)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # The run the requests belong to, and what was selected for it (kept with the run).
    run_id: str | None = None
    selection: dict[str, object] = field(default_factory=dict)

    def trace(self, request: MigrationRequest) -> TraceContext:
        """The trace ``request`` starts when this plan is published."""
        return planned_trace(self.plan_id, request.request_id)


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("plan and execution (safe by default: plan only)")
    group.add_argument(
        "--execute", action="store_true", help="publish the plan (default: print it only)"
    )
    group.add_argument(
        "--sample", type=int, default=5, metavar="N", help="requests shown in the plan (5)"
    )
    group.add_argument(
        "--plan-out", metavar="PATH", help="write the plan, request ids included, to PATH"
    )
    group.add_argument(
        "--from-plan",
        metavar="PATH",
        help="take the plan from a file --plan-out wrote instead of selecting again; with "
        "--execute, publish exactly its requests",
    )


def planned_request_id(plan_id: uuid.UUID, action: str, user_id: str) -> uuid.UUID:
    """A request id fixed by the plan: the plan shows the ids ``--execute`` publishes."""
    return uuid.uuid5(plan_id, f"{action}:{user_id}")


def write_plan(plan: Plan, path: str) -> None:
    header = {
        "format": PLAN_FORMAT,
        "command": plan.command,
        "plan_id": str(plan.plan_id),
        "created_at": plan.created_at.isoformat(),
        "count": len(plan.requests),
        "summary": plan.summary,
        "run_id": plan.run_id,
        "selection": plan.selection,
    }
    with Path(path).open("w", encoding="utf-8") as out:
        out.write(json.dumps(header, ensure_ascii=False) + "\n")
        for request in plan.requests:
            line = request.model_dump_json(exclude_none=True)
            trace_id = plan.trace(request).trace_id
            out.write(f'{line[:-1]},"trace_id":"{trace_id}"}}\n')


def read_plan(path: str, command: str) -> Plan:
    lines = Path(path).read_bytes().decode("utf-8").splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != PLAN_FORMAT:
        raise CliError(f"{path}: not a plan written by `migrator … --plan-out`")
    if header.get("command") != command:
        raise CliError(
            f"{path}: a plan of `migrator {header.get('command')}`, not of `migrator {command}`"
        )
    requests = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            requests.append(MigrationRequest.model_validate_json(line))
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise CliError(f"{path}, line {number}: not a request ({problem})") from None
    if len(requests) != header.get("count"):
        raise CliError(f"{path}: {len(requests)} requests, the header says {header.get('count')}")
    return Plan(
        command,
        requests,
        [*header.get("summary", []), f"(from {path}, planned {header.get('created_at')})"],
        uuid.UUID(header["plan_id"]),
        datetime.fromisoformat(header["created_at"]),
        header.get("run_id"),
        dict(header.get("selection") or {}),
    )


def saved_plan(args: argparse.Namespace, command: str, *, selected: bool) -> Plan | None:
    """The plan of ``--from-plan``, if given; ``selected`` says a selection was given beside it,
    which the file's selection would silently override: refused."""
    if not args.from_plan:
        return None
    if selected:
        raise CliError("--from-plan takes the selection from the file: no --ids/--file/filters")
    return read_plan(args.from_plan, command)


def carry_out(
    plan: Plan,
    args: argparse.Namespace,
    *,
    rate_per_s: float | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """Print the plan; write it if asked; publish it with ``--execute``."""
    count = len(plan.requests)
    for line in plan.summary:
        out(line)
    out(f"{plan.command}: {count} request(s) to publish to {topics.REQUESTED}")
    shown = plan.requests[: max(args.sample, 0)]
    if shown:
        out(f"  sample ({len(shown)} of {count}):")
        trace_ids = [plan.trace(request).trace_id for request in shown]
        for line in sample_lines(shown, len(shown), trace_ids):
            out("  " + line)
    if args.plan_out:
        write_plan(plan, args.plan_out)
        out(
            f"plan written to {args.plan_out}; publish exactly it with: "
            f"migrator {plan.command} --from-plan {args.plan_out} --execute"
        )
    if not args.execute:
        out("nothing was published: add --execute to publish")
        return 0
    if not count:
        out("nothing to publish")
        return 0
    from streams.cli.kafka_io import publish

    settings = Settings.from_env()
    paused = _paused(settings)
    if paused:
        out(f"warning: {paused}")
    for run_id, added in asyncio.run(_record_runs(settings, plan)).items():
        out(f"run {run_id}: {added} request(s) added; follow it with: migrator runs show {run_id}")
    sent = asyncio.run(
        publish(
            settings,
            plan.requests,
            total=count,
            rate_per_s=rate_per_s,
            label=plan.command,
            trace=plan.trace,
        )
    )
    out(
        f"published {sent} request(s) to {topics.REQUESTED}, each starting its own trace "
        "(trace ids: the sample above; every one in the plan's file, --plan-out)"
    )
    return 0


def _paused(settings: Settings) -> str | None:
    """What a paused cluster means for requests about to be published (None: not paused, or
    the control topic could not be read now: the publish says so itself if Kafka is away)."""
    from streams.control_topic import read_control

    try:
        state = asyncio.run(read_control(settings, timeout_s=5))
    except Exception:  # noqa: BLE001 - a warning only: never in the way of the publish
        return None
    if not state.paused:
        return None
    return f"the cluster is {state.summary()}; these requests wait until `migrator control resume`"


async def _record_runs(settings: Settings, plan: Plan) -> dict[str, int]:
    """Each run the plan's requests carry learns how many it is given before they are
    published, so its figures never show answers to requests it does not count (a replay puts
    requests back into the runs they came from: done never exceeds requested)."""
    from agents.stores.runs import record_run
    from streams.connections import opened

    groups = Counter((r.run_id, r.action) for r in plan.requests if r.run_id is not None)
    if not groups:
        return {}
    added: Counter[str] = Counter()
    async with opened(settings) as (pool, _):
        for (run_id, action), count in sorted(groups.items()):
            assert run_id is not None
            await record_run(
                pool,
                run_id,
                action=action,
                count=count,
                created_by=plan.requests[0].requested_by or "migrator-cli",
                selection={
                    **plan.selection,
                    "plan_id": str(plan.plan_id),
                    "count": count,
                    "via": plan.command,
                },
                now=datetime.now(UTC),
            )
            added[run_id] += count
    return dict(added)
