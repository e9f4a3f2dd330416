"""Agent routing with Faust's ``test_context``: which record goes to which topic, with what.

The batch applier is replaced by a small deterministic stand-in (the applier has its own tests,
on fakes and on real servers), and the publisher ``create_app`` is handed records instead of
sending them (the Kafka transactions are exercised by the end-to-end tests).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.batch_transaction import Applied
from agents.core import control_state
from agents.core.decide import Rejected, Work
from agents.core.outcomes import failed_outcome
from schemas.events import OUTCOME, ErrorCode
from streams import topics
from streams.app import create_app
from streams.codecs import Send
from streams.context import ServiceContext
from streams.publishers import PlainPublisher
from streams.settings import Settings


class StandInApplier:
    """Migrates everyone except users named ``missing-*``, who fail with user_not_found."""

    def __init__(self) -> None:
        self.batches: list[list[Work]] = []
        self.rejected: list[Rejected] = []
        self.forced: list[Work] = []

    async def apply(
        self, batch: Sequence[Work], *, rejected: Sequence[Rejected] = (), abandoned: Any = None
    ) -> Applied:
        self.batches.append(list(batch))
        self.rejected += rejected
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
                OUTCOME.validate_python(
                    {
                        "event_id": uuid.uuid4(),
                        "request_id": request.request_id,
                        "user_id": request.user_id,
                        "action": request.action,
                        "outcome": "rolled_back" if request.action == "rollback" else "migrated",
                        "dry_run": request.dry_run,
                        "attempt": request.attempt,
                        "run_id": request.run_id,
                        "processed_at": now,
                    }
                )
            )
        return Applied.of(result, {0: {"requested": len(result)}})

    async def answer_failed(
        self,
        batch: Sequence[Work],
        code: ErrorCode,
        message: Callable[[Work], str],
        *,
        abandoned: Any = None,
    ) -> Applied:
        self.forced += batch
        now = datetime.now(UTC)
        failures = [failed_outcome(w, code, message(w), now=now, duration_ms=0) for w in batch]
        return Applied.of(failures, {0: {"requested": len(failures)}})


class Recorder(PlainPublisher):
    """At-least-once, but what would be sent is kept instead."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.sent: list[dict[str, Any]] = []

    async def publish(
        self, partition: int, epoch: int, sends: Sequence[Send], last_offset: int
    ) -> bool:
        self.sent += [
            {
                "topic": send.topic,
                "key": send.key,
                "value": send.value,
                "partition": partition,
                "headers": dict(send.headers),
                "last_offset": last_offset,
            }
            for send in sends
        ]
        return True

    def to(self, topic: str) -> list[dict[str, Any]]:
        return [record for record in self.sent if record["topic"] == topic]


@pytest.fixture
async def wired() -> AsyncIterator[tuple[ServiceContext, StandInApplier, Recorder]]:
    settings = Settings.from_env(
        {
            "MIGRATOR_APP_ID": f"agent-test-{uuid.uuid4().hex[:6]}",
            "MIGRATOR_BATCH_SIZE": "50",
            "MIGRATOR_BATCH_WITHIN_S": "0.05",
            "MIGRATOR_PROCESSING_GUARANTEE": "at_least_once",
        }
    )
    context = create_app(settings, publisher=lambda settings, app: Recorder(app))
    applier = StandInApplier()
    context.resources.batch_applier = applier  # type: ignore[assignment]
    context.resources.ready.set()
    context.control.ready.set()  # no control topic here: running, unthrottled
    assert isinstance(context.publisher, Recorder)
    yield context, applier, context.publisher


def request(user_id: str, **fields: Any) -> bytes:
    return json.dumps(
        {"schema_version": 1, "request_id": str(uuid.uuid4()), "user_id": user_id, **fields}
    ).encode()


async def put_all(
    context: ServiceContext, records: list[tuple[bytes | None, bytes]], partitions: int = 1
) -> None:
    """Records go round-robin over ``partitions`` (offsets rise across all of them); returns
    once every record is answered (one outcome or dead letter each)."""
    agent = context.agents["migrate"]
    recorder = context.publisher
    assert isinstance(recorder, Recorder)
    async with agent.test_context() as context:
        for number, (key, value) in enumerate(records):
            await context.put(value, key=key, partition=number % partitions)
        await _answered(recorder, len(records))


async def _answered(recorder: Recorder, expected: int, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(recorder.sent) < expected:
        if loop.time() > deadline:
            raise AssertionError(f"{len(recorder.sent)} of {expected} answered in {timeout_s} s")
        await asyncio.sleep(0.005)


async def test_valid_requests_get_one_outcome_each_on_the_right_topic(wired: Any) -> None:
    context, applier, recorder = wired
    await put_all(
        context,
        [
            (b"u1", request("u1")),
            (b"u2", request("u2", action="rollback")),
            (b"missing-3", request("missing-3")),
        ],
    )
    assert [w.request.user_id for batch in applier.batches for w in batch] == [
        "u1",
        "u2",
        "missing-3",
    ]
    assert [r["key"] for r in recorder.to(topics.MIGRATED)] == [b"u1"]
    assert [r["key"] for r in recorder.to(topics.ROLLED_BACK)] == [b"u2"]
    [failed] = recorder.to(topics.FAILED)
    assert failed["key"] == b"missing-3"
    assert failed["headers"]["migrator-error-code"] == b"user_not_found"
    assert failed["headers"]["migrator-retryable"] == b"false"
    assert failed["headers"]["migrator-original-topic"] == topics.REQUESTED.encode()
    body = json.loads(failed["value"])
    assert body["outcome"] == "failed" and body["request"]["user_id"] == "missing-3"


async def test_every_outcome_names_its_request_and_run_in_headers(wired: Any) -> None:
    context, _, recorder = wired
    values = [
        request("u1", run_id="wave-2"),
        request("u2", action="rollback"),
        request("missing-9", run_id="wave-2"),
    ]
    await put_all(context, [(b"u1", values[0]), (b"u2", values[1]), (b"missing-9", values[2])])
    by_key = {record["key"]: record["headers"] for record in recorder.sent}
    for key, value in zip((b"u1", b"u2", b"missing-9"), values, strict=True):
        sent = json.loads(value)
        assert by_key[key]["migrator-request-id"] == sent["request_id"].encode()
        assert by_key[key]["migrator-run-id"] == sent.get("run_id", "").encode()
        assert by_key[key]["migrator-original-offset"]  # and where the request was


async def test_invalid_records_are_dead_lettered_with_their_bytes_and_the_rest_go_on(
    wired: Any,
) -> None:
    context, applier, recorder = wired
    poison = [
        (b"x", b"\xff\xfe not utf-8"),
        (b"x", b"{not json"),
        (b"x", request("x", action="nuke")),
        (b"x", json.dumps({"user_id": "x"}).encode()),
        (b"other", request("x")),
        (None, request("x")),
        (b"x", b"{" + b" " * (1024 * 1024) + b"}"),
    ]
    await put_all(context, [*poison, (b"ok", request("ok"))])
    letters = recorder.to(topics.DEAD_LETTER)
    reasons = [json.loads(r["value"])["reason"] for r in letters]
    assert reasons == [
        "not_utf8",
        "not_json",
        "unknown_action",
        "invalid_request",
        "key_mismatch",
        "key_mismatch",
        "too_large",
    ]
    for record, (key, value) in zip(letters, poison, strict=True):
        original = json.loads(record["value"])["original"]
        assert base64.b64decode(original["value_b64"]) == value
        assert record["key"] == key
        assert record["headers"]["migrator-error-code"].decode() in reasons
    assert [r["key"] for r in recorder.to(topics.MIGRATED)] == [b"ok"]


async def test_each_partition_publishes_once_per_batch_with_its_last_offset(wired: Any) -> None:
    context, applier, recorder = wired
    await put_all(context, [(b"a", request("a")), (b"b", b"nope"), (b"c", request("c"))])
    assert len(applier.rejected) == 1  # handed to the applier to be recorded and counted once
    partitions = {r["partition"] for r in recorder.sent}
    assert len(partitions) == 1  # everything follows its source partition
    assert {r["last_offset"] for r in recorder.sent} == {2}
    assert context.stats.data["0"] == {"requested": 2}  # the totals the applier committed


async def test_each_partition_has_its_own_lane_in_order(wired: Any) -> None:
    context, applier, recorder = wired
    users = [f"user-{n}" for n in range(12)]
    await put_all(context, [(u.encode(), request(u)) for u in users], partitions=3)
    by_partition: dict[int, list[str]] = {}
    for batch in applier.batches:
        assert len({w.partition for w in batch}) == 1  # a batch is one partition's
        by_partition.setdefault(batch[0].partition or 0, []).extend(
            w.request.user_id for w in batch
        )
    assert by_partition == {p: users[p::3] for p in range(3)}  # each partition in its order
    last = {r["partition"]: r["last_offset"] for r in recorder.sent}
    assert last == {0: 9, 1: 10, 2: 11}  # each partition's last record's offset


async def test_a_cancelled_runs_queued_requests_are_answered_cancelled_and_spare_the_budget(
    wired: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run "wrong" was cancelled when the topic ended at offset 3: its records below are
    answered failed/cancelled without reaching the applier's decisions; its record at offset 3
    (published after the cancel) and the other requests go the usual way. The failure budget
    is not shown the cancelled answers."""
    context, applier, recorder = wired
    context.control.current = control_state.apply(
        context.control.current,
        control_state.cancel_key("wrong"),
        {"at": "2026-11-28T12:00:00Z", "by": "ops", "reason": "oops", "before": {"0": 3}},
    )
    judged: list[Any] = []
    monkeypatch.setattr(context.control, "observe", judged.extend)
    await put_all(
        context,
        [
            (b"u0", request("u0", run_id="wrong")),
            (b"u1", request("u1", run_id="right")),
            (b"u2", request("u2", run_id="wrong")),
            (b"u3", request("u3", run_id="wrong")),
            (b"missing-4", request("missing-4")),
        ],
    )
    assert [w.request.user_id for w in applier.forced] == ["u0", "u2"]
    decided = [w.request.user_id for batch in applier.batches for w in batch]
    assert decided == ["u1", "u3", "missing-4"]
    failed = {r["key"]: r for r in recorder.to(topics.FAILED)}
    assert set(failed) == {b"u0", b"u2", b"missing-4"}
    for key in (b"u0", b"u2"):
        headers = failed[key]["headers"]
        assert headers["migrator-error-code"] == b"cancelled"
        assert headers["migrator-retryable"] == b"true"
        assert headers["migrator-run-id"] == b"wrong"
        body = json.loads(failed[key]["value"])
        assert (
            "run wrong was cancelled at 2026-11-28T12:00:00Z by ops: oops"
            in body["error"]["message"]
        )
        assert body["request"]["user_id"] == key.decode()  # what a replay publishes again
    assert [r["key"] for r in recorder.to(topics.MIGRATED)] == [b"u1", b"u3"]
    assert sorted(o.user_id for o in judged) == ["missing-4", "u1", "u3"]
