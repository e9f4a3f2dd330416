"""Trace context end to end: every answer of a flood belongs to its request's trace.

The worker runs as a process with tracing on (``OTEL_EXPORTER_OTLP_ENDPOINT``), exporting over
real OTLP/HTTP to a receiver in this test process (``scripts/otlp_receiver.py``). Requests
come every way they can: ``migrator enqueue`` and ``replay`` (a trace each, fixed by the plan),
``POST migrate`` (a trace each, or the call's), records that carry their own ``traceparent``,
records that carry none or an invalid one, and records that are no request at all (dead
letters). The outcomes and dead letters are read back with their raw headers.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ADMIN_TOKEN, Stack, Worker, cli, seed

from streams import topics
from streams.cli.kafka_io import read_records
from streams.stack.ports import free_port
from streams.trace_context import parse_traceparent
from streams.tracing import KAFKA_SPAN, POSTGRES_SPAN, REDIS_SPAN, REQUEST_SPAN

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.e2e
API = "/api/v1/onboarding/migration"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver(free_port()) as running:
        yield running


@pytest.fixture(scope="module")
def worker(stack: Stack, receiver: OtlpReceiver) -> Iterator[Worker]:
    running = Worker(
        stack,
        app_id=f"e2e-tracing-{uuid.uuid4().hex[:6]}",
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "migrator-e2e",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
    ).start()
    yield running
    running.stop()


def _plan_traces(path: Path) -> dict[str, str]:
    """request id → trace id, from a plan file's lines."""
    lines = path.read_text().splitlines()[1:]
    return {line["request_id"]: line["trace_id"] for line in map(json.loads, lines)}


def _post(worker: Worker, body: Any, traceparent: str | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        worker.url + f"{API}/migrate", data=json.dumps(body).encode(), method="POST"
    )
    request.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
    if traceparent is not None:
        request.add_header("traceparent", traceparent)
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        return dict(json.loads(response.read()))


def _value(user: str, **fields: Any) -> bytes:
    return json.dumps(
        {"schema_version": 1, "request_id": str(uuid.uuid4()), "user_id": user, **fields}
    ).encode()


async def _produce(
    stack: Stack, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send(topics.REQUESTED, value, key=key, headers=headers or None)
        await producer.flush()
    finally:
        await producer.stop()


async def _answers(stack: Stack, wanted: int, timeout_s: float = 180) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    names = (*topics.OUTCOME_TOPICS.values(), topics.DEAD_LETTER)
    while True:
        records = [r async for r in read_records(stack.settings, *names, idle_timeout_s=1.0)]
        if len(records) >= wanted or time.monotonic() > deadline:
            assert len(records) >= wanted, f"{len(records)} of {wanted} answers"
            return records
        await asyncio.sleep(1)


def _traceparent_of(record: Any) -> str:
    """The record's one traceparent (failing when there are none or two)."""
    values = [v for name, v in record.headers if name.lower() == "traceparent"]
    assert len(values) == 1, f"{len(values)} traceparent headers on {record.topic}"
    states = [v for name, v in record.headers if name.lower() == "tracestate"]
    assert len(states) <= 1
    return bytes(values[0]).decode()


async def test_every_answer_of_a_flood_belongs_to_its_request_s_trace(
    stack: Stack, worker: Worker, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    users = await seed(stack, 150, prefix="trace-")
    expected: dict[str, str] = {}  # request id → trace id its outcome must carry
    started_by_worker: set[str] = set()  # request ids sent without (a valid) traceparent

    # 1. migrator enqueue: a trace per request, shown in the plan.
    plan = tmp_path / "enqueue.jsonl"
    shown = cli(stack, "enqueue", "--ids", ",".join(users[:80]), "--plan-out", str(plan))
    planned = _plan_traces(plan)
    assert len(set(planned.values())) == 80
    assert all(f"trace_id={t}" in shown for t in list(planned.values())[:5])
    cli(stack, "enqueue", "--from-plan", str(plan), "--execute")
    expected.update(planned)

    # 2. POST migrate: a trace per request, or the call's own trace for all of them.
    answer = _post(worker, {"user_ids": users[80:90]})
    assert len(set(answer["trace_ids"])) == 10
    expected.update(zip(answer["request_ids"], answer["trace_ids"], strict=True))
    call_trace = uuid.uuid4().hex
    answer = _post(worker, {"user_ids": users[90:95]}, f"00-{call_trace}-{'ab' * 8}-01")
    assert answer["trace_ids"] == [call_trace] * 5
    expected.update(dict.fromkeys(answer["request_ids"], call_trace))
    answer = _post(worker, {"user_ids": users[95:100]}, "00-not-a-trace")  # ignored, not refused
    assert len(set(answer["trace_ids"])) == 5 and call_trace not in answer["trace_ids"]
    expected.update(zip(answer["request_ids"], answer["trace_ids"], strict=True))

    # 3. Upstream records: with their own traceparent (and tracestate), without, with an
    # invalid one or two; and a user with no legacy row (a failure, replayed below).
    records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
    upstream: dict[str, str] = {}
    for user in users[100:120]:
        trace_id = uuid.uuid4().hex
        value = _value(user)
        upstream[json.loads(value)["request_id"]] = trace_id
        headers = [("traceparent", f"00-{trace_id}-{'cd' * 8}-01".encode())]
        records.append((user.encode(), value, [*headers, ("tracestate", b"up=1")]))
    expected.update(upstream)
    invalid_headers: list[list[tuple[str, bytes]]] = [
        [],
        [("traceparent", b"garbage")],
        [("traceparent", f"00-{uuid.uuid4().hex}-{'ef' * 8}-01".encode())] * 2,
    ]
    for number, user in enumerate(users[120:150]):
        value = _value(user)
        started_by_worker.add(json.loads(value)["request_id"])
        records.append((user.encode(), value, invalid_headers[number % 3]))
    ghost = f"trace-ghost-{uuid.uuid4().hex[:6]}"
    ghost_value = _value(ghost)
    ghost_request = json.loads(ghost_value)["request_id"]
    ghost_trace = uuid.uuid4().hex
    records.append(
        (ghost.encode(), ghost_value, [("traceparent", f"00-{ghost_trace}-{'12' * 8}-01".encode())])
    )
    # 4. Dead letters: not JSON with a valid traceparent (continued), with none, with two.
    dead_trace = uuid.uuid4().hex
    dead_parent = f"00-{dead_trace}-{'34' * 8}-01".encode()
    records += [
        (b"dl-1", b"not json", [("traceparent", dead_parent), ("x-upstream", b"kept")]),
        (b"dl-2", b"not json", []),
        (b"dl-3", b"not json", [("traceparent", dead_parent), ("traceparent", dead_parent)]),
    ]
    await _produce(stack, records)
    await _answers(stack, 151 + 3)

    # 5. migrator replay of the ghost's failure: a new trace, fixed by the replay's plan.
    replay_plan = tmp_path / "replay.jsonl"
    cli(stack, "replay", "--ids", ghost, "--execute", "--plan-out", str(replay_plan))
    replay_trace = _plan_traces(replay_plan)[ghost_request]
    assert replay_trace != ghost_trace
    answers = await _answers(stack, 152 + 3)

    outcomes = [r for r in answers if r.topic != topics.DEAD_LETTER]
    letters = [r for r in answers if r.topic == topics.DEAD_LETTER]
    assert len(outcomes) == 152 and len(letters) == 3
    new_traces: set[str] = set()
    outcome_parents: dict[str, tuple[str, str]] = {}  # trace id → (parent span id, request id)
    for record in outcomes:
        value = json.loads(record.value)
        context = parse_traceparent(_traceparent_of(record))
        assert context is not None
        request_id = value["request_id"]
        outcome_parents[context.trace_id] = (context.span_id, request_id)
        if request_id == ghost_request:
            assert context.trace_id == (replay_trace if value["attempt"] == 2 else ghost_trace)
        elif request_id in started_by_worker:
            new_traces.add(context.trace_id)
        else:
            assert context.trace_id == expected[request_id], value["user_id"]
        if request_id in upstream:
            assert dict(record.headers)["tracestate"] == b"up=1"
    # Records without a valid traceparent got a trace each, started by the worker.
    assert len(new_traces) == 30 and not new_traces & set(expected.values())

    by_key = {record.key: record for record in letters}
    assert parse_traceparent(_traceparent_of(by_key[b"dl-1"])).trace_id == dead_trace  # type: ignore[union-attr]
    assert dict(by_key[b"dl-1"].headers)["x-upstream"] == b"kept"
    for key in (b"dl-2", b"dl-3"):
        assert parse_traceparent(_traceparent_of(by_key[key])).trace_id != dead_trace  # type: ignore[union-attr]

    # The spans: a request span per answer, in its trace, parent of what its answer carries,
    # linked to the batch's PostgreSQL, Redis and Kafka transaction spans.
    spans = _wait_for_spans(receiver, len(answers))
    assert {span.service for span in spans} == {"migrator-e2e"}
    by_id = {span.span_id: span for span in spans}
    requests = {span.span_id: span for span in spans if span.name == REQUEST_SPAN}
    for trace_id, (parent_id, request_id) in outcome_parents.items():
        span = requests[parent_id]
        assert span.trace_id == trace_id and span.kind == 5  # SPAN_KIND_CONSUMER
        assert span.attributes["migrator.request_id"] == request_id
        if request_id in started_by_worker:
            assert span.parent_span_id == ""  # the root of the trace the worker started
        linked = Counter(by_id[span_id].name for _, span_id in span.links)
        assert linked[POSTGRES_SPAN] >= 1 and linked[KAFKA_SPAN] >= 1, linked
        if span.attributes["migrator.answer"] == "migrated":
            assert linked[REDIS_SPAN] >= 1, linked
        for link_trace, link_span in span.links:
            assert by_id[link_span].trace_id == link_trace
    letter_spans = [
        s for s in requests.values() if s.attributes["migrator.answer"] == "dead_letter"
    ]
    assert len(letter_spans) == 3
    continued = [s for s in letter_spans if s.trace_id == dead_trace]
    assert len(continued) == 1 and continued[0].parent_span_id == "34" * 8


def _wait_for_spans(
    receiver: OtlpReceiver, answers: int, timeout_s: float = 30
) -> list[ReceivedSpan]:
    deadline = time.monotonic() + timeout_s
    while True:
        spans = list(receiver.spans)
        if sum(s.name == REQUEST_SPAN for s in spans) >= answers or time.monotonic() > deadline:
            assert sum(s.name == REQUEST_SPAN for s in spans) >= answers
            return spans
        time.sleep(0.5)
