"""``migrator replay``: re-publish the requests of failed outcomes with attempt + 1.

The plan (``ReplayFilter``, ``plan_replay``) is pure; the Kafka reading and publishing happen in
the handler, which imports them only when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.events import MigrationRequest, Outcome
from streams.cli.output import add_id_options, parse_time, print_plan, read_ids
from streams.settings import Settings


@dataclass(frozen=True)
class ReplayFilter:
    since: datetime | None = None
    until: datetime | None = None
    codes: frozenset[str] = frozenset()
    user_ids: frozenset[str] = frozenset()
    retryable_only: bool = False

    def accepts(self, outcome: Outcome) -> bool:
        if outcome.outcome != "failed" or outcome.error is None or outcome.request is None:
            return False
        if self.since is not None and outcome.processed_at < self.since:
            return False
        if self.until is not None and outcome.processed_at >= self.until:
            return False
        if self.codes and outcome.error.code.value not in self.codes:
            return False
        if self.user_ids and outcome.user_id not in self.user_ids:
            return False
        return not (self.retryable_only and not outcome.error.retryable)


def plan_replay(values: Iterable[bytes], selection: ReplayFilter) -> list[MigrationRequest]:
    """The requests to publish again: one per request_id (its latest failure), attempt + 1.

    A request whose latest failure is already superseded by a higher attempt in the topic is
    replayed from that higher attempt, so replaying twice does not go back in time.
    """
    latest: dict[Any, tuple[int, dict[str, Any]]] = {}
    for value in values:
        try:
            outcome = Outcome.model_validate_json(value)
        except ValueError:
            continue  # not ours to judge here: the failed topic holds only our own outcomes
        if not selection.accepts(outcome):
            continue
        assert outcome.request is not None
        seen = latest.get(outcome.request_id)
        if seen is None or outcome.attempt >= seen[0]:
            latest[outcome.request_id] = (outcome.attempt, outcome.request)
    replays = []
    for attempt, original in latest.values():
        request = MigrationRequest.model_validate_json(json.dumps(original))
        replays.append(request.model_copy(update={"attempt": attempt + 1}))
    return replays


def _replay(args: argparse.Namespace) -> int:
    from streams import topics
    from streams.cli.kafka_io import publish, read_topic

    settings = Settings.from_env()
    selection = ReplayFilter(
        since=parse_time(args.since) if args.since else None,
        until=parse_time(args.until) if args.until else None,
        codes=frozenset(args.code or []),
        user_ids=frozenset(read_ids(args) or []),
        retryable_only=args.retryable_only,
    )

    async def collect() -> list[bytes]:
        return [value async for value in read_topic(settings, topics.FAILED)]

    replays = plan_replay(asyncio.run(collect()), selection)
    if not args.execute:
        print_plan("replay", replays, sample=args.sample, out=print)
        return 0
    sent = asyncio.run(publish(settings, replays, total=len(replays), label="replay"))
    print(f"re-published {sent} request(s) with attempt + 1")
    return 0


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "replay", help="re-publish the requests of failed outcomes with attempt + 1"
    )
    add_id_options(parser)
    parser.add_argument("--execute", action="store_true", help="publish (default: plan only)")
    parser.add_argument("--sample", type=int, default=5, help="requests shown in the plan")
    parser.add_argument("--since", help="ISO time: failures processed at or after")
    parser.add_argument("--until", help="ISO time: failures processed before")
    parser.add_argument("--code", action="append", help="error code (repeatable)")
    parser.add_argument("--retryable-only", action="store_true")
    parser.set_defaults(handler=_replay)
