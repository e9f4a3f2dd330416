"""Dead letters keep the original bytes; headers and metrics are well-formed text."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from agents.core import counters
from schemas.events import DeadLetter, DeadLetterReason, MigratedOutcome
from streams.codecs import HEADER_PREFIX, Origin, dead_letter, failure_headers
from streams.trace_context import TraceContext
from streams.web.metrics import WorkerMetrics, prometheus_text

ORIGIN = Origin("user-migration-requested", 3, 1234, 1_700_000_000_000)
TRACE = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")


def test_dead_letter_keeps_every_byte_of_the_original() -> None:
    key, value = None, b"\xff\x00 not utf-8 \xfe"
    raw, headers = dead_letter(
        ORIGIN,
        key=key,
        value=value,
        headers=[("h", b"\x01"), ("h", None)],
        reason=DeadLetterReason.NOT_UTF8,
        message="not UTF-8",
        trace=TRACE,
    )
    letter = DeadLetter.model_validate_json(raw)
    assert letter.reason is DeadLetterReason.NOT_UTF8 and letter.schema_version == 1
    assert letter.original.key_b64 is None
    assert base64.b64decode(letter.original.value_b64 or "") == value
    assert letter.original.headers == [["h", "AQ=="], ["h", None]]
    assert (letter.original.partition, letter.original.offset) == (3, 1234)
    assert dict(headers)[HEADER_PREFIX + "error-code"] == b"not_utf8"
    # The original headers ride along as Kafka headers too, after the service's own, and the
    # request's trace comes last.
    assert headers[-3:] == [("h", b"\x01"), ("h", b""), ("traceparent", TRACE.traceparent.encode())]


def test_a_dead_letter_never_carries_two_service_headers_of_one_name() -> None:
    _, headers = dead_letter(
        ORIGIN,
        key=b"k",
        value=b"v",
        headers=[(HEADER_PREFIX + "error-code", b"forged"), ("trace", b"t")],
        reason=DeadLetterReason.NOT_JSON,
        message="not JSON",
        trace=TRACE,
    )
    names = [name for name, _ in headers]
    assert names.count(HEADER_PREFIX + "error-code") == 1 and ("trace", b"t") in headers


def test_failure_headers_share_a_prefix_and_carry_text() -> None:
    headers = failure_headers(ORIGIN, code="user_not_found", retryable=True)
    names = [name for name, _ in headers]
    assert len(names) == len(set(names)) and all(n.startswith(HEADER_PREFIX) for n in names)
    values = {name.removeprefix(HEADER_PREFIX): raw.decode() for name, raw in headers}
    assert values == {
        "error-code": "user_not_found",
        "retryable": "true",
        "original-topic": "user-migration-requested",
        "original-partition": "3",
        "original-offset": "1234",
        "original-timestamp": "1700000000000",
    }


def _metrics() -> WorkerMetrics:
    first = counters.empty()
    first["requested"] = first["migrated"] = 3
    first["latency"] = {
        str(counters.latency_bucket(0.5)): 1,
        str(counters.latency_bucket(400_000)): 2,
    }
    first["latency_sum_ms"] = 800_000.5
    second = counters.empty()
    second["requested"] = second["failed"] = 2
    second["failed_by_code"] = {"user_not_found": 2}
    return WorkerMetrics(
        worker="host:1",
        partitions={0: first, 2: second},
        lag={0: 5, 2: 0},
        backlog={0: 7},
        cluster={"legacy_users": 100, "legacy_remaining": 95, "redis_mirror_pending": 0},
        dependencies={"postgres": True, "redis": False, "kafka": True},
        process={"process_resident_memory_bytes": 1.5e8, "process_cpu_seconds_total": 2.5},
    )


def test_metrics_parse_as_prometheus_text_and_sum_across_partitions() -> None:
    families = {f.name: f for f in text_string_to_metric_families(prometheus_text(_metrics()))}
    requested = families["migrator_requested"].samples
    assert sum(sample.value for sample in requested) == 5
    assert {sample.labels["partition"] for sample in requested} == {"0", "2"}
    assert all(sample.labels["worker"] == "host:1" for sample in requested)
    [code] = families["migrator_failed_by_code"].samples
    assert code.labels == {"worker": "host:1", "partition": "2", "code": "user_not_found"}
    latency = families["migrator_request_to_outcome_seconds"].samples
    sums = {s.labels["partition"]: s.value for s in latency if s.name.endswith("_sum")}
    assert sums == {"0": 800.0005, "2": 0.0}
    buckets = [
        s.value for s in latency if s.name.endswith("_bucket") and s.labels["partition"] == "0"
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 3
    assert families["migrator_backlog_records"].samples[0].value == 7
    assert families["migrator_legacy_remaining"].samples[0].labels == {"scope": "cluster"}
    up = {s.labels["dependency"]: s.value for s in families["migrator_dependency_up"].samples}
    assert up == {"postgres": 1, "redis": 0, "kafka": 1}
    assert families["process_resident_memory_bytes"].samples[0].value == 1.5e8


def test_the_latency_sum_adds_up_across_batches() -> None:
    outcomes = [
        MigratedOutcome(
            event_id=uuid.uuid4(),
            request_id=uuid.uuid4(),
            user_id="u",
            action="migrate",
            processed_at=datetime.now(UTC),
        )
    ]
    total = counters.empty()
    for latency in (12.5, 7.5):
        delta = counters.batch_delta(outcomes, [latency], dead_lettered=0, now_s=0)
        total = counters.merge(total, delta, now_s=0)
    assert total["latency_sum_ms"] == 20.0
    assert json.dumps(counters.summary(total, now_s=0), allow_nan=False)


def test_every_answer_names_its_request_record() -> None:
    from streams.codecs import answered_offset, origin_headers

    headers = origin_headers(ORIGIN)
    assert answered_offset(headers) == (ORIGIN.partition, ORIGIN.offset)
    failed = failure_headers(ORIGIN, code="user_not_found", retryable=False)
    assert answered_offset(failed) == (ORIGIN.partition, ORIGIN.offset)
    assert answered_offset([]) is None and answered_offset(None) is None


def test_the_headers_written_are_the_ones_documented() -> None:
    """The AsyncAPI document lists ``ORIGIN_HEADERS`` and ``REQUEST_HEADERS``; the answers carry
    exactly those, in that order, as UTF-8 text."""
    from streams.codecs import ORIGIN_HEADERS, REQUEST_HEADERS, origin_headers, request_headers

    outcome = MigratedOutcome.model_validate(
        {
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "request_id": "6f1d7a52-3c1e-4c57-9f0e-5b0d3f3f7a11",
            "user_id": "u-1",
            "action": "migrate",
            "dry_run": False,
            "attempt": 1,
            "run_id": "wave-ü",
            "duration_ms": 1.0,
            "processed_at": datetime(2026, 12, 3, tzinfo=UTC),
            "steps_total": 24,
            "already_done": False,
            "session_id": str(uuid.uuid4()),
            "session_status": "in_progress",
            "completion_percentage": 50.0,
            "steps_completed": 12,
            "legacy_snapshot_sha256": "0" * 64,
        }
    )
    assert origin_headers(ORIGIN) == [
        (HEADER_PREFIX + name, value)
        for name, value in zip(
            ORIGIN_HEADERS,
            [b"user-migration-requested", b"3", b"1234", b"1700000000000"],
            strict=True,
        )
    ]
    assert origin_headers(Origin("t", 0, 0, None))[-1] == (
        HEADER_PREFIX + "original-timestamp",
        b"",
    )
    assert request_headers(outcome) == [
        (HEADER_PREFIX + name, value)
        for name, value in zip(
            REQUEST_HEADERS,
            [b"6f1d7a52-3c1e-4c57-9f0e-5b0d3f3f7a11", "wave-ü".encode()],
            strict=True,
        )
    ]
    unrun = outcome.model_copy(update={"run_id": None})
    assert request_headers(unrun)[-1] == (HEADER_PREFIX + "run-id", b"")


def test_the_audit_gauges_are_cluster_facts_per_partition() -> None:
    from streams.web.metrics import WorkerMetrics, prometheus_text

    text = prometheus_text(
        WorkerMetrics(
            worker="h:1",
            partitions={},
            audit_open={"unanswered": {0: 0, 1: 2}, "duplicated": {0: 0, 1: 0}},
            audit_worker={"rounds": 3, "records": 40, "errors": 1},
        )
    )
    assert 'migrator_unanswered_records{scope="cluster",partition="1"} 2' in text
    assert 'migrator_duplicated_answers{scope="cluster",partition="0"} 0' in text
    assert 'migrator_answer_audit_records_total{worker="h:1"} 40' in text


def test_the_drift_counter_reads_zero_before_its_first_mismatch() -> None:
    from dataclasses import replace

    fresh = {"sampled": 4, "mismatches": {}}
    text = prometheus_text(replace(_metrics(), revalidation=fresh))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [drift] = families["migrator_revalidation_mismatches"].samples
    assert drift.labels["check"] == "legacy_row_unchanged_since_migration" and drift.value == 0
    found = {"sampled": 9, "mismatches": {"status_consistent": 2}}
    text = prometheus_text(replace(_metrics(), revalidation=found))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    by_check = {
        s.labels["check"]: s.value for s in families["migrator_revalidation_mismatches"].samples
    }
    assert by_check == {"legacy_row_unchanged_since_migration": 0, "status_consistent": 2}


def test_table_sizes_are_cluster_gauges_and_pruning_counts_per_worker() -> None:
    from dataclasses import replace

    metrics = replace(
        _metrics(),
        tables={"processed_records": (8192, 12), "worker_status": (16384, None)},
        pruning={"rounds": 3, "deleted": 40, "errors": 1},
    )
    families = {f.name: f for f in text_string_to_metric_families(prometheus_text(metrics))}
    sizes = {s.labels["table"]: s.value for s in families["migrator_table_bytes"].samples}
    assert sizes == {"processed_records": 8192, "worker_status": 16384}
    assert families["migrator_table_bytes"].samples[0].labels["scope"] == "cluster"
    [rows] = families["migrator_table_rows_estimate"].samples  # no estimate: left out
    assert (rows.labels["table"], rows.value) == ("processed_records", 12)
    [deleted] = families["migrator_processed_pruning_deleted"].samples
    assert (deleted.labels, deleted.value) == ({"worker": "host:1"}, 40)
    bare = prometheus_text(_metrics())  # PostgreSQL away: no table gauges, counters still 0
    assert "migrator_table_bytes" not in bare
    assert 'migrator_processed_pruning_rounds_total{worker="host:1"} 0' in bare
