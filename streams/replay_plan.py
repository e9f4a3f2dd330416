"""Which failed outcomes ``migrator replay`` re-publishes, and as what: pure selection logic."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.events import MigrationRequest, Outcome


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
