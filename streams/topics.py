"""Topic names of the public contract (§1) and of the service's own internal topics."""

from __future__ import annotations

REQUESTED = "user-migration-requested"
MIGRATED = "user-migration-migrated"
FAILED = "user-migration-failed"
ROLLED_BACK = "user-migration-rolled-back"
DEAD_LETTER = "user-migration-dead-letter"
# Run events (started, paused, finished, ...): one partition, one order for every run's life;
# compacted and keyed by the event id, so it keeps every event for ever (a handful per run) and
# can never hold one twice for long.
RUN_EVENTS = "user-migration-runs"

OUTCOME_TOPICS: dict[str, str] = {
    "migrated": MIGRATED,
    "failed": FAILED,
    "rolled_back": ROLLED_BACK,
}
PUBLIC_TOPICS = (REQUESTED, MIGRATED, FAILED, ROLLED_BACK, DEAD_LETTER)


# Records larger than the contract's 1 MiB limit must still reach the worker (to be dead-lettered
# with their bytes), and a dead letter carries them base64-encoded (4/3 of the size) plus JSON.
MAX_REQUEST_RECORD_BYTES = 4 * 1024 * 1024
MAX_DEAD_LETTER_BYTES = 8 * 1024 * 1024
# The most bytes the worker's producers put in one record batch. aiokafka sends one batch per
# partition in a produce request, and an idempotent producer waits for a partition's request
# before it sends the next: at aiokafka's default of 16 KiB, a transaction of a few hundred
# answers took about 15 sequential produce round trips (a 20,000-user flood: 61 produce requests
# per 1,000 users; 6 with this size). Below the outcome topics' max.message.bytes (the broker's
# default, 1,048,588 bytes); a larger record still goes, alone in a batch of its own.
PRODUCE_BATCH_BYTES = 1_000_000


def topic_config(name: str) -> dict[str, str]:
    """Per-topic settings the worker applies when it creates a topic."""
    if name == DEAD_LETTER:
        return {"max.message.bytes": str(MAX_DEAD_LETTER_BYTES)}
    if name == REQUESTED:
        return {"max.message.bytes": str(MAX_REQUEST_RECORD_BYTES)}
    return {}


def control_topic(app_id: str) -> str:
    """Run control's topic (pause, throttle) of an app id: one partition, compacted."""
    return f"{app_id}-control"


CONTROL_TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}


RUN_EVENTS_TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
