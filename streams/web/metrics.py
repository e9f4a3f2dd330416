"""Prometheus text exposition (format 0.0.4) of the live counters: pure string building."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.core.counters import COUNTERS, LATENCY_BOUNDS_MS, cumulative_counts

_HELP = {
    "requested": "Accepted request records.",
    "migrated": "Migrated outcomes (dry runs excluded).",
    "rolled_back": "Rolled-back outcomes (dry runs excluded).",
    "failed": "Failed outcomes (dry runs excluded).",
    "dry_run": "Dry-run outcomes.",
    "already_done": "Outcomes whose effect was already in place.",
    "dead_lettered": "Records sent to the dead-letter topic.",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(summary: Mapping[str, Any], totals: Mapping[str, Any]) -> str:
    lines: list[str] = []
    for name in COUNTERS:
        metric = f"migrator_{name}_total"
        lines += [f"# HELP {metric} {_HELP[name]}", f"# TYPE {metric} counter"]
        lines.append(f"{metric} {int(summary[name])}")
    lines += [
        "# HELP migrator_failed_by_code_total Failed outcomes by error code.",
        "# TYPE migrator_failed_by_code_total counter",
    ]
    for code, count in sorted(summary["failed_by_code"].items()):
        lines.append(f'migrator_failed_by_code_total{{code="{_escape(code)}"}} {int(count)}')
    lines += [
        "# HELP migrator_request_to_outcome_seconds Time from request record to outcome.",
        "# TYPE migrator_request_to_outcome_seconds histogram",
    ]
    histogram = totals.get("latency") or {}
    for bound, count in zip(
        LATENCY_BOUNDS_MS, cumulative_counts(histogram, LATENCY_BOUNDS_MS), strict=True
    ):
        lines.append(f'migrator_request_to_outcome_seconds_bucket{{le="{bound / 1000:g}"}} {count}')
    running = sum(int(count) for count in histogram.values())
    lines.append(f'migrator_request_to_outcome_seconds_bucket{{le="+Inf"}} {running}')
    lines.append(f"migrator_request_to_outcome_seconds_count {running}")
    if "mirror_pending" in summary:
        lines += [
            "# HELP migrator_redis_mirror_pending Users whose Redis mirror waits for repair.",
            "# TYPE migrator_redis_mirror_pending gauge",
            f"migrator_redis_mirror_pending {int(summary['mirror_pending'])}",
        ]
    lines += [
        "# HELP migrator_throughput_per_second Outcomes per second over the last minute.",
        "# TYPE migrator_throughput_per_second gauge",
        f"migrator_throughput_per_second {summary['throughput_per_s_last_minute']}",
    ]
    return "\n".join(lines) + "\n"
