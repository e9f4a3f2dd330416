"""Topic names of the public contract (§1) and of the service's own internal topics."""

from __future__ import annotations

REQUESTED = "user-migration-requested"
MIGRATED = "user-migration-migrated"
FAILED = "user-migration-failed"
ROLLED_BACK = "user-migration-rolled-back"
DEAD_LETTER = "user-migration-dead-letter"

OUTCOME_TOPICS: dict[str, str] = {
    "migrated": MIGRATED,
    "failed": FAILED,
    "rolled_back": ROLLED_BACK,
}
PUBLIC_TOPICS = (REQUESTED, MIGRATED, FAILED, ROLLED_BACK, DEAD_LETTER)


def stats_topic(app_id: str) -> str:
    """Counter deltas, one record per processed batch and source partition (internal)."""
    return f"{app_id}-stats"
