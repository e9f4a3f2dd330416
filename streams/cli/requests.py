"""The request options ``enqueue`` and ``rollback`` share, and the plan built from them."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from schemas.identifiers import RUN_ID, RUN_ID_RULE
from streams.cli.plans import Plan, planned_request_id
from streams.requests_out import new_requests


def add_request_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the requests")
    group.add_argument(
        "--dry-run-requests",
        action="store_true",
        help="publish requests marked dry_run: the worker plans and answers each one but "
        "changes nothing (not to be confused with the plan-only default of this command)",
    )
    group.add_argument("--reason", help="free text carried by each request (audit log)")
    group.add_argument(
        "--requested-by", default="migrator-cli", help="who asks, carried by each request"
    )
    group.add_argument(
        "--rate", type=float, metavar="N", help="publish at most N requests per second"
    )


def add_run_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--run", metavar="NAME", type=run_name, help=help)


def run_name(value: str) -> str:
    if not RUN_ID.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a run name ({RUN_ID_RULE})")
    return value


def request_plan(
    command: str,
    action: str,
    user_ids: list[str],
    args: argparse.Namespace,
    summary: list[str],
    *,
    selection: dict[str, object] | None = None,
) -> Plan:
    run_id = getattr(args, "run", None)
    plan = Plan(command, [], summary, run_id=run_id, selection=selection or {})
    plan.requests = new_requests(
        user_ids,
        action=action,
        dry_run=args.dry_run_requests,
        requested_by=args.requested_by,
        reason=args.reason,
        now=datetime.now(UTC),
        request_id=lambda user_id: planned_request_id(plan.plan_id, action, user_id),
        run_id=run_id,
    )
    return plan
