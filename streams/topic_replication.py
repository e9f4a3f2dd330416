"""Whether existing topics are replicated as the settings ask: the pure check behind
``topic_admin.ensure_topics``.

A topic made earlier with fewer copies (a development stack's topics, replication factor 1,
reused against a cluster) would silently keep one copy of every outcome: a single broker's
loss would lose acknowledged answers. Kafka never raises a topic's replication by itself, so
the worker refuses to start instead, naming the topic and what to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class TopicReplication:
    """How an existing topic is replicated: the fewest replicas of any of its partitions, and
    its ``min.insync.replicas`` (None: not known, the broker would not say)."""

    topic: str
    factor: int
    min_insync: int | None


def refusal(observed: Iterable[TopicReplication], *, factor: int, min_insync: int) -> str | None:
    """One line naming every topic below ``factor`` copies or ``min_insync`` in-sync copies, or
    None when all of them are at least as safe as asked. More than asked is fine."""
    low_factor = sorted((t.topic, t.factor) for t in observed if t.factor < factor)
    low_isr = sorted(
        (t.topic, t.min_insync)
        for t in observed
        if t.min_insync is not None and t.min_insync < min_insync
    )
    problems = []
    if low_factor:
        listed = ", ".join(f"{name} ({n})" for name, n in low_factor)
        problems.append(
            f"replication factor below MIGRATOR_TOPIC_REPLICATION_FACTOR={factor}: {listed}"
        )
    if low_isr:
        listed = ", ".join(f"{name} ({n})" for name, n in low_isr)
        problems.append(
            f"min.insync.replicas below MIGRATOR_TOPIC_MIN_INSYNC_REPLICAS={min_insync}: {listed}"
        )
    if not problems:
        return None
    return (
        "existing topics are less replicated than the settings ask ("
        + "; ".join(problems)
        + "); raise them with kafka-reassign-partitions and kafka-configs, or lower the settings"
    )
