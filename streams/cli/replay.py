"""``migrator replay``: publish again the latest failed request of each user, ``attempt + 1``.

Per user, not per request: a user who failed three times is replayed once, from the latest
failure, and a user whose later request succeeded is not replayed at all. The plan counts the
replays by error code and retryable flag, and warns when none of them can succeed unless the
data was fixed. Nothing is published without ``--execute``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.events import ErrorCode, MigrationRequest, Outcome, is_retryable, parse_outcome_json
from streams.cli.errors import CliError
from streams.cli.output import time_argument
from streams.cli.plans import Plan, add_plan_options, carry_out, saved_plan
from streams.cli.replay_unanswered import add_option as add_unanswered_option
from streams.cli.selection import add_id_options, read_ids
from streams.settings import Settings

EXAMPLES = """examples:
  migrator replay                                   plan: every user whose latest request failed
  migrator replay --code database_unavailable --execute
  migrator replay --since 2026-11-24T08:00 --retryable-only
  migrator replay --ids u1,u2 --plan-out replay.jsonl
  migrator replay --unanswered --execute            the records the answer audit found unanswered
"""


@dataclass(frozen=True)
class ReplayFilter:
    since: datetime | None = None
    until: datetime | None = None
    codes: frozenset[str] = frozenset()
    user_ids: frozenset[str] = frozenset()
    retryable_only: bool = False

    def accepts(self, outcome: Outcome) -> bool:
        assert outcome.error is not None
        if self.since is not None and outcome.processed_at < self.since:
            return False
        if self.until is not None and outcome.processed_at >= self.until:
            return False
        if self.codes and outcome.error.code.value not in self.codes:
            return False
        if self.user_ids and outcome.user_id not in self.user_ids:
            return False
        return not (self.retryable_only and not outcome.error.retryable)


@dataclass
class ReplayPlan:
    requests: list[MigrationRequest] = field(default_factory=list)
    by_code: Counter[str] = field(default_factory=Counter)
    superseded: int = 0  # users whose latest failure a later success made moot
    dry_runs: int = 0  # failed dry runs: never replayed

    @property
    def retryable(self) -> int:
        return sum(n for code, n in self.by_code.items() if is_retryable(ErrorCode(code)))

    def summary(self) -> list[str]:
        lines = [f"replay: {len(self.requests)} user(s) whose latest request failed"]
        if self.by_code:
            codes = ", ".join(
                f"{code} {n} ({'retryable' if is_retryable(ErrorCode(code)) else 'not retryable'})"
                for code, n in sorted(self.by_code.items())
            )
            lines.append(f"  by code: {codes}")
            others = len(self.requests) - self.retryable
            lines.append(f"  retryable: {self.retryable}, not retryable: {others}")
        if self.superseded:
            lines.append(f"  skipped: {self.superseded} user(s) whose later request succeeded")
        if self.dry_runs:
            lines.append(f"  skipped: {self.dry_runs} failed dry run(s) (never replayed)")
        if self.requests and not self.retryable:
            lines.append(
                "  WARNING: every planned request failed for a reason a retry does not cure; "
                "they will fail again unless their data was fixed"
            )
        return lines


def plan_replay(values: Iterable[bytes], selection: ReplayFilter) -> ReplayPlan:
    """From the outcome topics' values: each user's latest failed request, ``attempt + 1``, if
    it passes ``selection`` and no success of that user came after it."""
    latest_failure: dict[str, Outcome] = {}
    latest_success: dict[str, datetime] = {}
    plan = ReplayPlan()
    for value in values:
        try:
            outcome = parse_outcome_json(value)
        except ValueError:
            continue  # not ours to judge here: these topics hold only our own outcomes
        user = outcome.user_id
        if outcome.dry_run:
            plan.dry_runs += outcome.outcome == "failed"
        elif outcome.outcome == "failed":
            seen = latest_failure.get(user)
            if seen is None or _later(outcome, seen):
                latest_failure[user] = outcome
        else:
            seen_success = latest_success.get(user)
            if seen_success is None or outcome.processed_at > seen_success:
                latest_success[user] = outcome.processed_at
    for user, failure in sorted(latest_failure.items()):
        if failure.error is None or failure.request is None or not selection.accepts(failure):
            continue
        succeeded = latest_success.get(user)
        if succeeded is not None and succeeded >= failure.processed_at:
            plan.superseded += 1
            continue
        request = MigrationRequest.model_validate_json(json.dumps(failure.request))
        plan.requests.append(request.model_copy(update={"attempt": failure.attempt + 1}))
        plan.by_code[failure.error.code.value] += 1
    return plan


def _later(a: Outcome, b: Outcome) -> bool:
    return (a.processed_at, a.attempt) > (b.processed_at, b.attempt)


def _replay(args: argparse.Namespace) -> int:
    if args.unanswered:
        from streams.cli.replay_unanswered import replay_unanswered

        return replay_unanswered(args)
    if args.since is not None and args.until is not None and args.until <= args.since:
        since, until = args.since.isoformat(), args.until.isoformat()
        raise CliError(f"--until {until} is not after --since {since}: nothing could match")
    filtered = bool(args.ids or args.file or args.code or args.since or args.until)
    saved = saved_plan(args, "replay", selected=filtered)
    if saved is not None:
        return carry_out(saved, args)
    from streams import topics
    from streams.cli.kafka_io import read_topics

    selection = ReplayFilter(
        since=args.since,
        until=args.until,
        codes=frozenset(args.code or []),
        user_ids=frozenset(read_ids(args) or []),
        retryable_only=args.retryable_only,
    )
    settings = Settings.from_env()

    async def collect() -> list[bytes]:
        names = (topics.FAILED, topics.MIGRATED, topics.ROLLED_BACK)
        return [value async for value in read_topics(settings, *names)]

    replays = plan_replay(asyncio.run(collect()), selection)
    return carry_out(Plan("replay", replays.requests, replays.summary()), args)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "replay",
        help="publish again the latest failed request of each user (attempt + 1)",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_id_options(parser, what="only these users")
    parser.add_argument(
        "--since",
        type=time_argument,
        metavar="TIME",
        help="only failures processed at or after TIME",
    )
    parser.add_argument(
        "--until", type=time_argument, metavar="TIME", help="only failures processed before TIME"
    )
    parser.add_argument(
        "--code",
        action="append",
        choices=[code.value for code in ErrorCode],
        metavar="CODE",
        help="only this error code (repeatable): " + ", ".join(code.value for code in ErrorCode),
    )
    parser.add_argument(
        "--retryable-only", action="store_true", help="only failures a retry may cure"
    )
    add_unanswered_option(parser)
    add_plan_options(parser)
    parser.set_defaults(handler=_replay)
