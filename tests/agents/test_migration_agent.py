"""Agent routing with Faust's ``test_context``: which record goes to which topic, with what.

The migration core is replaced by a small deterministic stand-in (the core has its own
integration tests on real servers), and publishing is recorded instead of sent.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.decide import Work
from agents.outcomes import failed_outcome
from schemas.events import ErrorCode, Outcome
from streams import topics
from streams.app import Migrator, create_app
from streams.settings import Settings


class StandInCore:
    """Migrates everyone except users named ``missing-*``, who fail with user_not_found."""

    def __init__(self) -> None:
        self.batches: list[list[Work]] = []

    async def apply(self, batch: Sequence[Work]) -> list[Outcome]:
        self.batches.append(list(batch))
        now = datetime.now(UTC)
        result = []
        for work in batch:
            request = work.request
            if request.user_id.startswith("missing-"):
                result.append(
                    failed_outcome(work, ErrorCode.USER_NOT_FOUND, "no row", now=now, duration_ms=1)
                )
                continue
            result.append(
                Outcome(
                    event_id=uuid.uuid4(),
                    request_id=request.request_id,
                    user_id=request.user_id,
                    action=request.action,
                    outcome="rolled_back" if request.action == "rollback" else "migrated",
                    dry_run=request.dry_run,
                    attempt=request.attempt,
                    processed_at=now,
                )
            )
        return result


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, topic: Any, *, key: bytes | None, value: bytes, partition: int,
                       headers: Any = None) -> Any:  # fmt: skip
        self.sent.append(
            {"topic": topic.get_topic_name(), "key": key, "value": value,
             "partition": partition, "headers": dict(headers or [])}
        )  # fmt: skip
        future: Any = __import__("asyncio").get_running_loop().create_future()
        future.set_result(None)
        return future

    def to(self, topic: str) -> list[dict[str, Any]]:
        return [record for record in self.sent if record["topic"] == topic]


@pytest.fixture
async def wired() -> AsyncIterator[tuple[Migrator, StandInCore, Recorder]]:
    settings = Settings.from_env(
        {"MIGRATOR_APP_ID": f"agent-test-{uuid.uuid4().hex[:6]}", "MIGRATOR_BATCH_SIZE": "50",
         "MIGRATOR_BATCH_WITHIN_S": "0.05"}
    )  # fmt: skip
    migrator = create_app(settings)
    core = StandInCore()
    recorder = Recorder()
    migrator.resources.core = core  # type: ignore[assignment]
    migrator.resources.ready.set()
    migrator.publish = recorder  # type: ignore[method-assign]
    yield migrator, core, recorder


def request(user_id: str, **fields: Any) -> bytes:
    return json.dumps(
        {"schema_version": 1, "request_id": str(uuid.uuid4()), "user_id": user_id, **fields}
    ).encode()


async def put_all(migrator: Migrator, records: list[tuple[bytes | None, bytes]]) -> None:
    agent = migrator.agents["migrate"]
    async with agent.test_context() as context:
        for key, value in records:
            await context.put(value, key=key)
        await _drain(context)


async def _drain(context: Any) -> None:
    import asyncio

    # take_events flushes after `within` seconds; give it a few cycles.
    for _ in range(20):
        await asyncio.sleep(0.05)
    del context


async def test_valid_requests_get_one_outcome_each_on_the_right_topic(wired: Any) -> None:
    migrator, core, recorder = wired
    await put_all(
        migrator,
        [
            (b"u1", request("u1")),
            (b"u2", request("u2", action="rollback")),
            (b"missing-3", request("missing-3")),
        ],
    )
    assert [w.request.user_id for batch in core.batches for w in batch] == ["u1", "u2", "missing-3"]
    assert [r["key"] for r in recorder.to(topics.MIGRATED)] == [b"u1"]
    assert [r["key"] for r in recorder.to(topics.ROLLED_BACK)] == [b"u2"]
    [failed] = recorder.to(topics.FAILED)
    assert failed["key"] == b"missing-3"
    assert failed["headers"]["migrator-error-code"] == b"user_not_found"
    assert failed["headers"]["migrator-retryable"] == b"false"
    assert failed["headers"]["migrator-original-topic"] == topics.REQUESTED.encode()
    body = json.loads(failed["value"])
    assert body["outcome"] == "failed" and body["request"]["user_id"] == "missing-3"


async def test_invalid_records_are_dead_lettered_with_their_bytes_and_the_rest_go_on(
    wired: Any,
) -> None:
    migrator, core, recorder = wired
    poison = [
        (b"x", b"\xff\xfe not utf-8"),
        (b"x", b"{not json"),
        (b"x", request("x", action="nuke")),
        (b"x", json.dumps({"user_id": "x"}).encode()),
        (b"other", request("x")),
        (None, request("x")),
        (b"x", b"{" + b" " * (1024 * 1024) + b"}"),
    ]  # fmt: skip
    await put_all(migrator, [*poison, (b"ok", request("ok"))])
    letters = recorder.to(topics.DEAD_LETTER)
    reasons = [json.loads(r["value"])["reason"] for r in letters]
    assert reasons == [
        "not_utf8", "not_json", "unknown_action", "invalid_request", "key_mismatch",
        "key_mismatch", "too_large",
    ]  # fmt: skip
    for record, (key, value) in zip(letters, poison, strict=True):
        original = json.loads(record["value"])["original"]
        assert base64.b64decode(original["value_b64"]) == value
        assert record["key"] == key
        assert record["headers"]["migrator-error-code"].decode() in reasons
    assert [r["key"] for r in recorder.to(topics.MIGRATED)] == [b"ok"]


async def test_each_batch_publishes_one_stats_delta_per_partition(wired: Any) -> None:
    migrator, _, recorder = wired
    await put_all(migrator, [(b"a", request("a")), (b"b", b"nope"), (b"c", request("c"))])
    deltas = [json.loads(r["value"]) for r in recorder.to(migrator.stats_deltas.get_topic_name())]
    assert sum(d["requested"] for d in deltas) == 2
    assert sum(d["migrated"] for d in deltas) == 2
    assert sum(d["dead_lettered"] for d in deltas) == 1
    partitions = {r["partition"] for r in recorder.sent}
    assert len(partitions) == 1  # everything follows its source partition


async def test_stats_agent_folds_each_batch_once_even_when_delivered_twice(wired: Any) -> None:
    migrator, _, recorder = wired
    agent = migrator.agents["count"]
    first = {"requested": 2, "migrated": 1, "failed": 1, "failed_by_code": {"user_not_found": 1},
             "source_first": 0, "source_last": 1}  # fmt: skip
    second = {**first, "source_first": 2, "source_last": 3}
    async with agent.test_context() as context:
        event = await context.put(first, key="0")
        await context.put(first, key="0")  # redelivered: already counted
        await context.put(second, key="0")
        partition = str(event.message.partition)
    total = migrator.stats.data[partition]
    assert total["requested"] == 4 and total["failed_by_code"] == {"user_not_found": 2}
    assert total["counted_through"] == 3
    changelog = recorder.to(migrator.stats.changelog_topic.get_topic_name())
    assert len(changelog) == 2  # one changelog record per applied delta, in the transaction
