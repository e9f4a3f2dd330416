"""The shipped alert rules: valid (`promtool check rules`), each alert firing and staying quiet as
its test says (`promtool test rules`), and tested on series the workers really export: every
series of the test file has a metric name and label names that /metrics uses (so a renamed
metric or label fails here, not silently in someone's Prometheus)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from agents.core import counters
from streams.web.metrics import PROCESS, WorkerMetrics, prometheus_text

DOCS = Path(__file__).parents[2] / "docs"
RULES = DOCS / "prometheus-alerts.yml"
TESTS = DOCS / "prometheus-alerts.test.yml"
# Labels a scrape adds; the rest must be the exporter's own.
_SCRAPE_LABELS = {"job", "instance"}
_SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: `scripts/install-test-tools` installs it", pytrace=False)
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, check=False, timeout=60
    )


def test_the_rules_pass_promtool_check_and_their_tests() -> None:
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", str(TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_test_that_fires_it() -> None:
    rules = yaml.safe_load(RULES.read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load(TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == fired, alerts ^ fired


def _exported() -> dict[str, set[frozenset[str]]]:
    """Metric name → the label-name sets /metrics gives it, from a worker that has every kind
    of figure (paused, throttled, a budget, a run, findings)."""
    text = prometheus_text(
        WorkerMetrics(
            worker="host:1",
            partitions={0: counters.empty()},
            lag={0: 0},
            backlog={0: 5},
            cluster={"legacy_users": 1, "legacy_remaining": 1},
            dependencies={"postgres": True, "redis": False, "kafka": True},
            process=dict.fromkeys(PROCESS, 1.0),
            control={
                "worker_paused": True,
                "auto": True,
                "worker_rate_per_s": 10.0,
                "auto_pauses": 1,
                "failure_budget_used": 0.5,
            },
            revalidation={"sampled": 3, "mismatches": {"session_in_redis": 1}},
            audit_open={"unanswered": {0: 1}, "duplicated": {0: 0}},
            audit_worker={"rounds": 1, "records": 1, "errors": 0},
            run_events={"leading": True, "published": 3, "hooks": {"done": 2, "failed": 1}},
        )
    )
    found: dict[str, set[frozenset[str]]] = {}
    for line in text.splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        name, labels = line.split("{", 1)
        found.setdefault(name, set()).add(frozenset(_LABEL.findall(labels.rsplit("}", 1)[0])))
    return found


def test_the_tests_use_series_shaped_like_the_real_metrics() -> None:
    exported = _exported()
    tests = yaml.safe_load(TESTS.read_text())["tests"]
    used = [series["series"] for test in tests for series in test["input_series"]]
    assert used
    for series in used:
        match = _SERIES.match(series)
        assert match, series
        name, labels = match.group(1), set(_LABEL.findall(match.group(2)))
        assert _SCRAPE_LABELS <= labels, f"{series}: a scraped series has job and instance"
        assert name in exported, f"{name} is not exported by /metrics"
        assert frozenset(labels - _SCRAPE_LABELS) in exported[name], (
            f"{series}: /metrics labels {name} with {sorted(map(sorted, exported[name]))}"
        )
