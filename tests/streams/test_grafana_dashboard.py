"""The shipped Grafana dashboard reads only metrics /metrics exports (no drift)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agents.core import counters
from streams.web.metrics import PROCESS, WorkerMetrics, prometheus_text

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-dashboard.json"
_METRIC = re.compile(r"\b((?:migrator|process)_[a-z_]+)")


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    text = prometheus_text(
        WorkerMetrics(
            worker="w",
            partitions={0: counters.empty()},
            lag={0: 0},
            backlog={0: 0},
            cluster={
                "legacy_users": 1,
                "legacy_migrated": 0,
                "legacy_failed_for_good": 0,
                "legacy_remaining": 1,
                "redis_mirror_pending": 0,
            },
            dependencies={"postgres": True},
            process=dict.fromkeys(PROCESS, 1.0),
            control={"worker_paused": True, "worker_rate_per_s": 10.0, "auto_pauses": 1},
            revalidation={"sampled": 3, "mismatches": {"session_in_redis": 1}},
            runs=[
                {
                    "run_id": "canary",
                    "requested": 2,
                    "done": 2,
                    "migrated": 1,
                    "failed": 1,
                    "rolled_back": 0,
                    "failed_by_code": {"user_not_found": 1},
                }
            ],
        )
    )
    exported = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
            exported |= {name + suffix for suffix in suffixes}
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in _METRIC.findall(target["expr"])
    }
    assert queried and queried <= exported, sorted(queried - exported)
