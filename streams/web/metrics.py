"""Prometheus text exposition (format 0.0.4) of what one worker owns: pure string building.

Each worker exports the request partitions it owns, labelled ``worker`` and ``partition``: their
counters (kept in PostgreSQL, advanced in each batch's transaction), latency histogram, consumer
lag and backlog. A partition is owned by one worker at a time, so ``sum()`` over the scraped
workers is the cluster's figure. Facts about the whole population (legacy users, remaining,
mirror pending) are the same on every worker and labelled ``scope="cluster"``: use ``max()``.
Dependency health and the process's own metrics are per worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.core.counters import COUNTERS, LATENCY_BOUNDS_MS, cumulative_counts
from agents.core.revalidation_tally import DRIFT_CHECK

_HELP = {
    "requested": "Accepted request records.",
    "migrated": "Migrated outcomes (dry runs excluded).",
    "rolled_back": "Rolled-back outcomes (dry runs excluded).",
    "failed": "Failed outcomes (dry runs excluded).",
    "dry_run": "Dry-run outcomes.",
    "already_done": "Outcomes whose effect was already in place.",
    "dead_lettered": "Records sent to the dead-letter topic.",
}

# Cluster-wide gauges: name → help.
CLUSTER_GAUGES = {
    "legacy_users": "Legacy users in PostgreSQL.",
    "legacy_migrated": "Legacy users marked migrated.",
    "legacy_failed_for_good": "Users not migrated whose migration failed for a reason only "
    "fixing the data cures.",
    "legacy_remaining": "Legacy users still to migrate (neither migrated nor failed for good).",
    "redis_mirror_pending": "Users whose Redis mirror waits for repair.",
}

# Names of the process metrics, as the Prometheus client libraries spell them.
PROCESS = {
    "process_resident_memory_bytes": ("gauge", "Resident memory size in bytes."),
    "process_cpu_seconds_total": ("counter", "Total user and system CPU time in seconds."),
    "process_start_time_seconds": ("gauge", "Start time of the process since the epoch."),
    "process_open_fds": ("gauge", "Number of open file descriptors."),
}


@dataclass(frozen=True)
class WorkerMetrics:
    worker: str
    partitions: Mapping[int, Mapping[str, Any]]  # owned request partitions' counter totals
    lag: Mapping[int, int] = field(default_factory=dict)  # owned: fetched or waiting, unanswered
    backlog: Mapping[int, int] = field(default_factory=dict)  # owned: end - committed offset
    cluster: Mapping[str, float | int | None] = field(default_factory=dict)
    dependencies: Mapping[str, bool] = field(default_factory=dict)
    process: Mapping[str, float] = field(default_factory=dict)
    # Run control, as this worker applies it: paused (and why), its throttle share, auto-pauses.
    control: Mapping[str, Any] = field(default_factory=dict)
    # This worker's re-validation sampler: users sampled, mismatches by check.
    revalidation: Mapping[str, Any] = field(default_factory=dict)
    # The latest runs (cluster facts, same on every worker): run id → figures.
    runs: Sequence[Mapping[str, Any]] = ()
    # The answer audit: open findings by kind and partition (cluster facts, every partition of
    # the topic present, 0 when clean) and this worker's rounds.
    audit_open: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    audit_worker: Mapping[str, Any] = field(default_factory=dict)
    # Each table of the schema: (bytes on disk, PostgreSQL's row estimate or None); cluster
    # facts, left out with PostgreSQL away.
    tables: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)
    # This worker's pruning of processed_records: rounds, rows deleted, rounds skipped.
    pruning: Mapping[str, int] = field(default_factory=dict)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: object) -> str:
    inner = ",".join(f'{name}="{_escape(str(value))}"' for name, value in labels.items())
    return "{" + inner + "}"


def _family(lines: list[str], name: str, kind: str, text: str) -> None:
    lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def prometheus_text(metrics: WorkerMetrics) -> str:
    lines: list[str] = []
    worker = metrics.worker
    owned = sorted(metrics.partitions.items())
    for name in COUNTERS:
        metric = f"migrator_{name}_total"
        _family(lines, metric, "counter", _HELP[name])
        for partition, totals in owned:
            value = int(totals.get(name, 0))
            lines.append(f"{metric}{_labels(worker=worker, partition=partition)} {value}")
    _family(lines, "migrator_failed_by_code_total", "counter", "Failed outcomes by error code.")
    for partition, totals in owned:
        for code, count in sorted(totals.get("failed_by_code", {}).items()):
            labels = _labels(worker=worker, partition=partition, code=code)
            lines.append(f"migrator_failed_by_code_total{labels} {int(count)}")
    _latency(lines, worker, owned)
    for metric, values, text in (
        (
            "migrator_consumer_lag_records",
            metrics.lag,
            "Request records this worker fetched or has waiting and not yet answered.",
        ),
        (
            "migrator_backlog_records",
            metrics.backlog,
            "Request records not yet answered: end offset minus the committed offset.",
        ),
    ):
        _family(lines, metric, "gauge", text)
        for partition, value in sorted(values.items()):
            lines.append(f"{metric}{_labels(worker=worker, partition=partition)} {int(value)}")
    for key, text in CLUSTER_GAUGES.items():
        gauge = metrics.cluster.get(key)
        if gauge is not None:
            _family(lines, f"migrator_{key}", "gauge", text + " Same on every worker: max().")
            lines.append(f'migrator_{key}{{scope="cluster"}} {gauge}')
    _family(lines, "migrator_dependency_up", "gauge", "1 when the dependency answers this worker.")
    for dependency, up in sorted(metrics.dependencies.items()):
        labels = _labels(worker=worker, dependency=dependency)
        lines.append(f"migrator_dependency_up{labels} {1 if up else 0}")
    _control(lines, worker, metrics.control)
    _revalidation(lines, worker, metrics.revalidation)
    _runs(lines, metrics.runs)
    _audit(lines, worker, metrics.audit_open, metrics.audit_worker)
    _tables(lines, worker, metrics.tables, metrics.pruning)
    for metric, (kind, text) in PROCESS.items():
        if metric in metrics.process:
            _family(lines, metric, kind, text)
            lines.append(f"{metric}{_labels(worker=worker)} {float(metrics.process[metric])!r}")
    return "\n".join(lines) + "\n"


def _tables(
    lines: list[str],
    worker: str,
    tables: Mapping[str, tuple[int, int | None]],
    pruning: Mapping[str, int],
) -> None:
    """What grows: each table's size (cluster facts, ``max()``), and what prunes it."""
    if tables:
        _family(
            lines,
            "migrator_table_bytes",
            "gauge",
            "A table's size on disk, indexes and TOAST included. Same on every worker: max().",
        )
        for table, (size, _) in sorted(tables.items()):
            lines.append(f"migrator_table_bytes{_labels(scope='cluster', table=table)} {size}")
        _family(
            lines,
            "migrator_table_rows_estimate",
            "gauge",
            "A table's live rows per PostgreSQL's statistics (n_live_tup: close, not exact).",
        )
        for table, (_, rows) in sorted(tables.items()):
            if rows is not None:
                labels = _labels(scope="cluster", table=table)
                lines.append(f"migrator_table_rows_estimate{labels} {rows}")
    for key, text in (
        ("rounds", "Pruning rounds of processed_records this worker ran (one worker at a time)."),
        ("deleted", "Rows of processed_records this worker pruned."),
        ("errors", "Pruning rounds this worker skipped: Kafka or PostgreSQL away."),
    ):
        metric = f"migrator_processed_pruning_{key}_total"
        _family(lines, metric, "counter", text)
        lines.append(f"{metric}{_labels(worker=worker)} {int(pruning.get(key, 0))}")


def _latency(lines: list[str], worker: str, owned: list[tuple[int, Mapping[str, Any]]]) -> None:
    name = "migrator_request_to_outcome_seconds"
    _family(lines, name, "histogram", "Time from request record to outcome.")
    for partition, totals in owned:
        histogram = totals.get("latency") or {}
        cumulative = cumulative_counts(histogram, LATENCY_BOUNDS_MS)
        for bound, count in zip(LATENCY_BOUNDS_MS, cumulative, strict=True):
            labels = _labels(worker=worker, partition=partition, le=f"{bound / 1000:g}")
            lines.append(f"{name}_bucket{labels} {count}")
        running = sum(int(count) for count in histogram.values())
        labels = _labels(worker=worker, partition=partition, le="+Inf")
        lines.append(f"{name}_bucket{labels} {running}")
        plain = _labels(worker=worker, partition=partition)
        lines.append(f"{name}_sum{plain} {float(totals.get('latency_sum_ms', 0.0)) / 1000!r}")
        lines.append(f"{name}_count{plain} {running}")


def _control(lines: list[str], worker: str, control: Mapping[str, Any]) -> None:
    if not control:
        return
    _family(lines, "migrator_paused", "gauge", "1 while this worker takes no requests (paused).")
    auto = "true" if control.get("auto") else "false"
    labels = _labels(worker=worker, auto=auto)
    lines.append(f"migrator_paused{labels} {1 if control.get('worker_paused') else 0}")
    _family(
        lines,
        "migrator_throttle_users_per_second",
        "gauge",
        "This worker's share of the cluster's throttle (0: not throttled); sum() is the ceiling.",
    )
    rate = control.get("worker_rate_per_s") or 0
    lines.append(f"migrator_throttle_users_per_second{_labels(worker=worker)} {float(rate)!r}")
    _family(lines, "migrator_auto_pauses_total", "counter", "Pauses this worker started by itself.")
    lines.append(
        f"migrator_auto_pauses_total{_labels(worker=worker)} {int(control.get('auto_pauses', 0))}"
    )


def _revalidation(lines: list[str], worker: str, found: Mapping[str, Any]) -> None:
    if not found:
        return
    _family(lines, "migrator_revalidated_users_total", "counter", "Migrated users re-validated.")
    lines.append(
        f"migrator_revalidated_users_total{_labels(worker=worker)} {int(found.get('sampled', 0))}"
    )
    _family(
        lines,
        "migrator_revalidation_mismatches_total",
        "counter",
        "Re-validated users failing a check, by check (drift: "
        "legacy_row_unchanged_since_migration).",
    )
    # The drift check has a series from the start (0 until a mismatch): a dashboard panel or
    # an alert on it reads 0, not "no data", on a healthy cluster.
    mismatches = {DRIFT_CHECK: 0, **found.get("mismatches", {})}
    for check, count in sorted(mismatches.items()):
        labels = _labels(worker=worker, check=check)
        lines.append(f"migrator_revalidation_mismatches_total{labels} {int(count)}")


_AUDIT_GAUGES = {
    "unanswered": (
        "migrator_unanswered_records",
        "Request records below the committed offset with no answer (open findings of the "
        "answer audit). Same on every worker: max().",
    ),
    "duplicated": (
        "migrator_duplicated_answers",
        "Request records answered more than once (open findings of the answer audit). "
        "Same on every worker: max().",
    ),
}


def _audit(
    lines: list[str], worker: str, found: Mapping[str, Mapping[int, int]], own: Mapping[str, Any]
) -> None:
    for kind, (metric, text) in _AUDIT_GAUGES.items():
        if kind not in found:
            continue
        _family(lines, metric, "gauge", text)
        for partition, count in sorted(found[kind].items()):
            lines.append(f"{metric}{_labels(scope='cluster', partition=partition)} {int(count)}")
    if not own:
        return
    for key, metric, text in (
        ("rounds", "migrator_answer_audit_rounds_total", "Answer audit rounds of this worker."),
        ("records", "migrator_answer_audit_records_total", "Request records it judged."),
        ("errors", "migrator_answer_audit_errors_total", "Rounds skipped (a server away)."),
    ):
        _family(lines, metric, "counter", text)
        lines.append(f"{metric}{_labels(worker=worker)} {int(own.get(key, 0))}")


_RUN_FIGURES = {
    "requested": "Migrate requests published in the run.",
    "done": "Migrate requests of the run answered.",
    "migrated": "Users the run migrated.",
    "failed": "Migrate requests of the run that failed.",
    "rolled_back": "Users of the run rolled back.",
}


def _runs(lines: list[str], runs: Sequence[Mapping[str, Any]]) -> None:
    if not runs:
        return
    for figure, text in _RUN_FIGURES.items():
        metric = f"migrator_run_{figure}"
        _family(lines, metric, "gauge", text + " Same on every worker: max().")
        for run in runs:
            labels = _labels(scope="cluster", run=run["run_id"])
            lines.append(f"{metric}{labels} {int(run.get(figure, 0))}")
    _family(
        lines,
        "migrator_run_failed_by_code",
        "gauge",
        "Migrate requests of the run that failed, by code. Same on every worker: max().",
    )
    for run in runs:
        for code, count in sorted(run.get("failed_by_code", {}).items()):
            labels = _labels(scope="cluster", run=run["run_id"], code=code)
            lines.append(f"migrator_run_failed_by_code{labels} {int(count)}")
