"""``make bench``'s idle cost and exactly-once vs at-least-once: counting and shaping.

The measurements need a stack; what they count in the servers' logs, how the figures become
rates and a cost, and what the table and JSON show are pure and pinned here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
bench_idle = importlib.import_module("bench_idle")
bench_e2e = importlib.import_module("bench_e2e")


def _kafka_line(api: str, client: str, listener: str) -> str:
    record = {
        "isForwarded": False,
        "requestHeader": {"requestApiKey": 1, "clientId": client, "requestApiKeyName": api},
        "request": {"maxWaitMs": 500},
        "response": {"throttleTimeMs": 0},
        "listener": listener,
    }
    return (
        f"[2026-12-02 13:48:55,306] DEBUG Completed request:{json.dumps(record)} "
        "(kafka.request.logger)"
    )


def test_kafka_requests_are_counted_on_the_client_listener_only() -> None:
    lines = [
        _kafka_line("FETCH", "faust-0.15.3", "PLAINTEXT"),
        _kafka_line("FETCH", "faust-0.15.3", "PLAINTEXT"),
        _kafka_line("HEARTBEAT", "aiokafka-0.14.0", "PLAINTEXT"),
        _kafka_line("BROKER_HEARTBEAT", "1", "CONTROLLER"),
        "[2026-12-02 13:48:55,400] INFO [GroupCoordinator 1]: something else (kafka.coordinator)",
        _kafka_line("FETCH", "faust-0.15.3", "PLAINTEXT")[:80],  # cut at the window's edge
    ]
    assert bench_idle.kafka_requests(lines) == Counter(
        {("FETCH", "faust-0.15.3"): 2, ("HEARTBEAT", "aiokafka-0.14.0"): 1}
    )


def test_postgres_statements_are_the_logged_statements_and_executes() -> None:
    lines = [
        "2026-12-02 13:50:01.001 UTC [4242] LOG:  statement: BEGIN",
        "2026-12-02 13:50:01.002 UTC [4242] LOG:  execute __asyncpg_stmt_3__: SELECT 1",
        "\tFROM somewhere",  # a statement's continuation line
        "2026-12-02 13:50:01.003 UTC [4242] LOG:  execute <unnamed>: SELECT 2",
        "2026-12-02 13:50:01.004 UTC [4000] LOG:  checkpoint starting: time",
        "2026-12-02 13:50:01.005 UTC [4242] DETAIL:  parameters: $1 = 'x'",
    ]
    assert bench_idle.pg_statements(lines) == 3


def test_redis_commands_leave_the_bench_s_own_info_out() -> None:
    stats = {
        "cmdstat_get": {"calls": 10, "usec": 5},
        "cmdstat_info": {"calls": 7, "usec": 5},
        "cmdstat_ping": {"calls": 2, "usec": 1},
    }
    assert bench_idle.redis_calls(stats) == 12


def _idle_cost() -> dict[str, Any]:
    return bench_idle.summarize(
        window_s=20.0,
        worker_cpu_s=0.5,
        servers_cpu_s={"kafka": 1.0, "postgres": 0.2, "redis": 0.02},
        pg_transactions=50,
        pg_statement_count=60,
        redis_commands=40,
        kafka=Counter({("FETCH", "faust"): 300, ("HEARTBEAT", "faust"): 7, ("FETCH", "aio"): 100}),
        settle_s=5.0,
    )


def test_the_idle_cost_is_per_second_of_the_window() -> None:
    idle = _idle_cost()
    assert idle["worker_cpu_ms_per_s"] == 25.0
    assert idle["postgres_transactions_per_s"] == 2.5
    assert idle["postgres_statements_per_s"] == 3.0
    assert idle["redis_commands_per_s"] == 2.0
    assert idle["kafka_requests_per_s"] == 20.35
    assert idle["kafka_requests_per_s_by_api"] == {"FETCH": 20.0, "HEARTBEAT": 0.35}
    assert idle["kafka_requests_by_client"] == {"faust": 307, "aio": 100}
    assert idle["servers_cpu_ms_per_s"] == {"kafka": 50.0, "postgres": 10.0, "redis": 1.0}
    assert idle["counts"]["kafka_requests"] == 407
    json.dumps(idle)  # the JSON report takes it as it is


def test_the_idle_cost_lines_say_each_rate() -> None:
    text = "\n".join(bench_idle.lines(_idle_cost()))
    assert text.startswith("idle cost: the drained worker over 20 s with nothing published")
    assert (
        "  idle: worker CPU 25.0 ms/s, PostgreSQL 2.5 tx/s and 3 statements/s, Redis 2 "
        "commands/s, Kafka 20.35 requests/s (FETCH 20, HEARTBEAT 0.35)"
    ) in text
    assert "kafka 50.0, postgres 10.0, redis 1.0" in text


def _flood(users_per_s: float, worker_cpu: float, users: int = 2_000) -> dict[str, Any]:
    return {
        "users": users,
        "seconds": round(users / users_per_s, 3),
        "users_per_s": users_per_s,
        "worker_peak_rss_mib": 90.0,
        "cpu_s_per_1000_users": {
            "worker": worker_cpu,
            "kafka": 0.2,
            "postgres": 0.25,
            "redis": 0.01,
            "bench client": 0.05,
        },
        "outcomes": {"migrated": users, "failed": 0, "rolled-back": 0},
        "machine": {
            "cores": 2,
            "busy_cores": 1.7,
            "steal_cores": 0.0,
            "idle_cores": 0.3,
            "processes_cores": 1.68,
            "worker_loop_thread_cores": 0.78,
        },
        "counter_lag": {"behind_records": 0, "behind_s": 0.0, "ahead_records": 10, "polls": 9},
    }


def _round(eos: float, alo: float, reference: float) -> dict[str, dict[str, Any]]:
    return {
        "exactly_once": _flood(eos, 0.36),
        "at_least_once": _flood(alo, 0.30),
        "reference": {
            **_flood(reference, 0.0),
            "what": "the same writes by hand",
            "cpu_s_per_1000_users": _REFERENCE_CPU,
        },
    }


_REFERENCE_CPU = {"reference": 0.2, "kafka": 0.1, "postgres": 0.2, "redis": 0.0}


def test_exactly_once_cost_is_the_share_of_at_least_once_throughput_given_up() -> None:
    # Costs 20 %, 50 % and -10 %: the median round is the first, whatever order they ran in.
    rounds = [_round(2000.0, 2500.0, 1.0), _round(1000.0, 2000.0, 1.0), _round(2200, 2000, 1.0)]
    summary = bench_e2e.guarantee_summary(rounds)
    assert [r["exactly_once_cost_pct_of_throughput"] for r in summary["rounds"]] == [
        20.0,
        50.0,
        -10.0,
    ]
    assert summary["exactly_once_cost_pct_of_throughput"] == 20.0
    assert summary["exactly_once_extra_worker_cpu_pct"] == 20.0
    assert summary["worker_cpu_s_per_1000_users"] == {"exactly_once": 0.36, "at_least_once": 0.3}
    assert summary["order"] == ["exactly_once", "at_least_once"]
    assert summary["users"] == 2_000
    lines = bench_e2e.guarantee_lines(summary)
    assert lines[0].startswith("exactly-once vs at-least-once: the flood again on 2,000 freshly")
    assert "3 round(s) in rotated order" in lines[0]
    assert lines[2].split()[:2] == ["exactly_once", "2,000"]
    assert lines[3].split()[:2] == ["at_least_once", "2,500"]
    assert lines[4] == (
        "  exactly-once costs 20.0 % of throughput (2,000 vs 2,500 users/s); worker CPU per "
        "1,000 users 0.36 vs 0.30 s (+20.0 %); each round: 20.0 %, 50.0 %, -10.0 %"
    )


def test_the_service_is_a_share_of_the_hand_written_pipeline_of_its_own_round() -> None:
    # Ratios 0.8, 0.5 and 1.1: the median round is the first.
    rounds = [_round(2000.0, 1.0, 2500.0), _round(1000.0, 1.0, 2000.0), _round(2200, 1.0, 2000)]
    summary = bench_e2e.reference_summary(rounds)
    assert summary["ratio"] == 0.8 and summary["ratios"] == [0.8, 0.5, 1.1]
    assert summary["users_per_s"] == 2500.0
    assert summary["service"] == {"users_per_s": 2000.0, "worker_cpu_s_per_1000_users": 0.36}
    lines = bench_e2e.reference_lines(summary)
    assert "in each of 3 round(s)" in lines[1]
    assert lines[3] == (
        "  service / hand-written = 0.80 (2,000 / 2,500 users/s); CPU per 1,000 users: worker "
        "0.36 s, hand-written 0.20 s; each round: 0.80, 0.50, 1.10"
    )


def test_each_round_rotates_the_order_by_one() -> None:
    modes = ["exactly_once", "at_least_once", "reference"]
    assert bench_e2e.round_orders(modes, 4) == [
        ["exactly_once", "at_least_once", "reference"],
        ["at_least_once", "reference", "exactly_once"],
        ["reference", "exactly_once", "at_least_once"],
        ["exactly_once", "at_least_once", "reference"],
    ]
    assert bench_e2e.round_orders(["exactly_once", "reference"], 1) == [
        ["exactly_once", "reference"]
    ]


def _share(partitions: list[int], users_per_s: float, cpu: float) -> dict[str, Any]:
    return {
        "partitions": partitions,
        "users": 1_000,
        "seconds": round(1_000 / users_per_s, 3),
        "users_per_s": users_per_s,
        "worker_cpu_s_per_1000_users": cpu,
    }


def test_tracing_cost_is_the_median_round_s_extra_cpu_of_the_traced_worker() -> None:
    def round_(first: str, off_cpu: float, on_cpu: float, spans: int) -> dict[str, Any]:
        runs = {
            "off": _share([2, 3], 1_250.0, off_cpu),
            "on": {**_share([0, 1], 1_200.0, on_cpu), "spans_received": spans},
        }
        return {mode: runs[mode] for mode in (first, "on" if first == "off" else "off")}

    # Extra CPU +5 %, +20 % and -2 % (the CPU per user itself from 0.30 to 0.50): the median
    # round is the first, whatever order the rounds ran in or the workers started in.
    pairs = [
        round_("off", 0.400, 0.420, 8_000),
        round_("on", 0.300, 0.360, 8_100),
        round_("off", 0.500, 0.490, 23),
    ]
    summary = bench_e2e.tracing_summary(pairs)
    assert summary["extra_cpu_pct"] == 5.0 and summary["median_by"] == "cpu"
    assert [p["extra_cpu_pct"] for p in summary["pairs"]] == [5.0, 20.0, -2.0]
    assert [p["first"] for p in summary["pairs"]] == ["off", "on", "off"]
    assert summary["rate_cost_pct"] == 4.0
    assert summary["on"]["worker_cpu_s_per_1000_users"] == 0.42
    assert summary["users"] == 2_000 and summary["spans_received"] == 16_123
    lines = bench_e2e.tracing_lines(summary)
    assert lines[0].startswith("tracing off and on side by side: two fresh workers in one group")
    assert "3 round(s), alternating which starts first" in lines[0]
    assert lines[2].split() == ["off", "2,3", "1,000", "1,250", "0.400"]
    assert lines[3].split() == ["on", "0,1", "1,000", "1,200", "0.420"]
    assert lines[4] == (
        "  tracing costs the worker +5.0 % CPU per user (each round: +5.0 %, +20.0 %, -2.0 %); "
        "the traced worker's rate -4.0 % against the untraced one's; 16,123 spans received"
    )
    assert "  tracing costs the worker +5.0 % CPU" in bench_e2e.table(_full_report(tracing=summary))


def test_exactly_once_side_by_side_is_the_median_round_s_rate_given_up() -> None:
    def round_(eos: float, alo: float) -> dict[str, dict[str, Any]]:
        return {
            "exactly_once": _share([0, 1], eos, 0.30),
            "at_least_once": _share([2, 3], alo, 0.29),
        }

    # Rates given up: 2 %, 10 %, -1 %: the median round is the first.
    summary = bench_e2e.paired_summary(
        [round_(980.0, 1_000.0), round_(900.0, 1_000.0), round_(1_010.0, 1_000.0)],
        bench_e2e.GUARANTEES,
        by="rate",
    )
    assert summary["rate_cost_pct"] == 2.0 and summary["extra_cpu_pct"] == 3.4
    lines = bench_e2e.paired_guarantee_lines(summary)
    assert lines[0].startswith("  side by side: two fresh workers in one group, one per guarantee")
    assert lines[2].split() == ["exactly_once", "0,1", "1,000", "980", "0.300"]
    assert lines[-1] == (
        "  the exactly-once worker's rate -2.0 % against the at-least-once one's (each round: "
        "-2.0 %, -10.0 %, +1.0 %); its CPU per user +3.4 %"
    )
    guarantees = {**bench_e2e.guarantee_summary([_round(2_400.0, 2_500.0, 2_600.0)] * 3)}
    report = _full_report(guarantees={**guarantees, "side_by_side": summary})
    assert "  the exactly-once worker's rate -2.0 %" in bench_e2e.table(report)


def test_two_workers_are_compared_with_one_and_with_the_hand_written_pipeline() -> None:
    def round_(one: float, two: float, reference: float) -> dict[str, dict[str, Any]]:
        workers = [
            _share([0, 1], two / 2, 0.27),
            _share([2, 3], two / 2, 0.28),
        ]
        return {
            **_round(one, one, reference),
            bench_e2e.TWO_WORKERS: {"users": 2_000, "users_per_s": two, "workers": workers},
        }

    # Two workers +50 %, +40 %, +60 % over one: the median round is the first.
    summary = bench_e2e.scale_out_summary(
        [
            round_(2_000.0, 3_000.0, 3_000.0),
            round_(2_000.0, 2_800.0, 2_500.0),
            round_(2_000.0, 3_200.0, 3_100.0),
        ]
    )
    assert summary["more_than_one_worker_pct"] == 50.0
    assert summary["ratio_to_hand_written"] == 1.0
    assert [r["ratio_to_hand_written"] for r in summary["rounds"]] == [1.0, 1.12, 1.032]
    lines = bench_e2e.scale_out_lines(summary)
    assert lines[1] == (
        "  3,000 users/s, +50.0 % against one worker (2,000); 1.00 of the hand-written pipeline "
        "(3,000); each round: 3,000, 2,800, 3,200 users/s"
    )
    assert lines[2].startswith("  worker on partitions 0,1: 1,500 users/s, 0.270 CPU s per 1,000")


@pytest.mark.parametrize(
    ("given", "pairs"), [({}, 5), ({"quick": True}, 1), ({"tracing_pairs": 3}, 3)]
)
def test_the_plan_floods_tracing_in_five_pairs_unless_told(
    given: dict[str, Any], pairs: int
) -> None:
    assert bench_e2e.build_plan(_args(**given)).tracing_pairs == pairs


def test_tracing_pairs_must_be_a_positive_whole_number() -> None:
    assert bench_e2e.positive("2") == 2
    for bad in ("0", "-1", "two"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench_e2e.positive(bad)


@pytest.mark.parametrize(
    ("given", "tracing_users"),
    [({}, 100_000), ({"quick": True}, None), ({"quick": True, "tracing": True}, 2_000)],
)
def test_the_plan_floods_with_tracing_on_and_off_unless_quick(
    given: dict[str, Any], tracing_users: int | None
) -> None:
    assert bench_e2e.build_plan(_args(**given)).tracing_users == tracing_users


def test_a_faster_exactly_once_run_is_a_negative_cost_and_no_reference_none() -> None:
    assert bench_e2e.percent_less(2600.0, 2500.0) == -4.0
    assert bench_e2e.percent_more(0.27, 0.30) == -10.0
    assert bench_e2e.percent_less(1.0, 0.0) is None


def _report(**extra: Any) -> dict[str, Any]:
    return {"commit": "abc1234", "machine": {"cpus": 2}, "floods": [_flood(2000.0, 0.36)], **extra}


def test_a_flood_only_report_prints_the_floods_alone() -> None:
    text = bench_e2e.table(_report())
    assert "flood: N requests published at once" in text
    assert "  machine during the 2,000-user flood: 1.70 of 2 cores busy" in text
    assert "counter lag" in text
    assert "idle" not in text and "reference only" not in text


def test_the_machine_s_use_is_cores_of_each_kind_over_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood of 10 s on 2 cores: 1,700 ticks busy (user, nice, system, irq, softirq), 100
    stolen, 200 idle (idle and iowait), 15 s of it in the measured processes."""
    monkeypatch.setattr(bench_e2e, "CLOCK_TICKS", 100)
    monkeypatch.setattr(bench_e2e.os, "cpu_count", lambda: 2)
    before = dict.fromkeys(bench_e2e._MACHINE_TICKS, 1000)
    spent = {"user": 1200, "nice": 0, "system": 300, "irq": 50, "softirq": 150, "steal": 100}
    spent |= {"idle": 150, "iowait": 50}
    after = {kind: before[kind] + spent[kind] for kind in before}
    use = bench_e2e.machine_use(before, after, 10.0, 15.0)
    assert use == {
        "cores": 2,
        "busy_cores": 1.7,
        "steal_cores": 0.1,
        "idle_cores": 0.2,
        "processes_cores": 1.5,
    }
    line = bench_e2e.machine_line(100_000, {**use, "worker_loop_thread_cores": 0.74})
    assert line == (
        "  machine during the 100,000-user flood: 1.70 of 2 cores busy (1.50 in the processes "
        "above), 0.20 unused, 0.10 taken by the hypervisor; the worker's event-loop thread 0.74 "
        "of a core"
    )


def test_the_machine_s_ticks_are_read_from_proc_stat() -> None:
    ticks = bench_e2e.machine_ticks()
    assert set(ticks) == set(bench_e2e._MACHINE_TICKS)
    assert ticks["idle"] > 0 and all(value >= 0 for value in ticks.values())


def _full_report(**extra: Any) -> dict[str, Any]:
    """A full run's report: floods, idle, half load, baseline and reference, and ``extra``."""
    return _report(
        idle={"requests": 5, "gap_s": 0.5, "p50_ms": 20.0, "p90_ms": 25.0, "max_ms": 30.0},
        half_load={
            "requests": 100,
            "achieved_rate_per_s": 1000.0,
            "seconds": 5.0,
            "publisher_linger_ms": 5,
            "p50_ms": 100.0,
            "p99_ms": 200.0,
            "max_ms": 250.0,
            "p50_ms_per_second": [90, 110],
            "cpu_s_per_1000_requests": {"worker": 0.3, "kafka": 0.2, "postgres": 0.2},
        },
        baseline={
            "what": "one user per transaction",
            "users": 200,
            "users_per_s": 100.0,
            "seconds": 2.0,
            "cpu_s_per_1000_users": {"postgres": 1.0, "redis": 0.1},
        },
        reference={
            "what": "the same writes by hand",
            "users": 2000,
            "users_per_s": 2500.0,
            "seconds": 0.8,
            "ratio": 0.8,
            "ratios": [0.8],
            "service": {"users_per_s": 2000.0, "worker_cpu_s_per_1000_users": 0.36},
            "cpu_s_per_1000_users": {"reference": 0.2, "kafka": 0.1, "postgres": 0.2, "redis": 0},
        },
        **extra,
    )


def test_the_full_table_has_the_idle_cost_and_guarantee_sections() -> None:
    report = _full_report(
        idle_cost=_idle_cost(),
        guarantees=bench_e2e.guarantee_summary([_round(2000.0, 2500.0, 2500.0)]),
    )
    lines = bench_e2e.table(report).splitlines()
    order = [
        next(i for i, line in enumerate(lines) if line.startswith(start))
        for start in (
            "flood:",
            "idle cost:",
            "latency,",
            "exactly-once vs",
            "reference only",
            "hand-written pipeline",
        )
    ]
    assert order == sorted(order)
    assert any(line.startswith("  service / hand-written = 0.80") for line in lines)
    assert any(line.startswith("  idle: worker CPU 25.0 ms/s") for line in lines)
    assert any(
        "single requests 0.5 s apart: p50 20 ms, p90 25 ms, max 30 ms" in line for line in lines
    )
    assert any("exactly-once costs 20.0 % of throughput" in line for line in lines)


def test_the_half_loads_warm_up_is_shown_after_the_measured_half_load() -> None:
    warm = {"p50_ms": 250.0, "p99_ms": 700.0, "cpu_s_per_1000_requests": {"kafka": 0.8}}
    lines = bench_e2e.table(_full_report(half_load_warm_up=warm)).splitlines()
    half = next(i for i, line in enumerate(lines) if line.startswith("  half load"))
    assert "(publisher linger 5 ms)" in lines[half]
    assert "its warm-up just before" in lines[half + 2]
    assert "p50 250 ms, p99 700 ms; Kafka CPU s per 1,000 requests 0.80" in lines[half + 2]
    assert "warm-up" not in bench_e2e.table(_full_report())


def _args(**given: Any) -> argparse.Namespace:
    values = {
        "users": None,
        "quick": False,
        "json": None,
        "stack_dir": None,
        "guarantees": None,
        "tracing": None,
        "tracing_pairs": None,
        "rounds": None,
        "flood_only": False,
    }
    return argparse.Namespace(**{**values, **given})


@pytest.mark.parametrize(
    ("given", "guarantee_users", "idle_window"),
    [
        ({}, 100_000, bench_e2e.IDLE_WINDOW),
        ({"users": (10_000, 1_000_000)}, 100_000, bench_e2e.IDLE_WINDOW),
        ({"users": (5_000,)}, 5_000, bench_e2e.IDLE_WINDOW),
        ({"quick": True}, None, bench_e2e.QUICK_IDLE_WINDOW),
        ({"quick": True, "guarantees": True}, 2_000, bench_e2e.QUICK_IDLE_WINDOW),
        ({"guarantees": False}, None, bench_e2e.IDLE_WINDOW),
        ({"flood_only": True, "guarantees": True}, None, None),
    ],
)
def test_what_the_plan_runs(
    given: dict[str, Any], guarantee_users: int | None, idle_window: Any
) -> None:
    plan = bench_e2e.build_plan(_args(**given))
    assert (plan.guarantee_users, plan.idle_window) == (guarantee_users, idle_window)


def test_the_stack_directory_and_its_report_can_live_elsewhere(tmp_path: Path) -> None:
    plan = bench_e2e.build_plan(_args(stack_dir=str(tmp_path / "stack")))
    assert plan.stack_dir == tmp_path / "stack"
    assert plan.json_path.parent == tmp_path / "stack"
    assert bench_e2e.build_plan(_args()).stack_dir == bench_e2e.STACK_DIR


def test_postgres_writes_are_taken_per_user_and_printed_per_flood() -> None:
    before = {
        "wal_bytes": 1_000,
        "full_page_images": 10,
        "checkpoints": 1,
        "pages_by_checkpointer": 0,
        "pages_by_bgwriter": 5,
        "pages_by_backends": 100,
        "pages_read_by_backends": 7,
        "autovacuum_runs": 2,
    }
    after = {
        **before,
        "wal_bytes": 1_000 + 2_000 * 10_240,
        "full_page_images": 1_510,
        "checkpoints": 3,
        "pages_by_backends": 1_700,
    }
    summary = bench_e2e.writes_summary(before, after, 2_000)
    assert summary == {
        "wal_bytes_per_user": 10_240,
        "full_page_images_per_user": 0.75,
        "checkpoints": 2,
        "autovacuum_runs": 0,
        "pages_by_checkpointer_per_1000_users": 0.0,
        "pages_by_bgwriter_per_1000_users": 0.0,
        "pages_by_backends_per_1000_users": 800.0,
        "pages_read_by_backends_per_1000_users": 0.0,
    }
    lines = bench_e2e.writes_lines([{"users": 2_000, "postgres_writes": summary}, {"users": 5}])
    assert lines[-1].startswith(
        "      2,000 users: WAL 10.0 KiB a user (0.75 full-page images a user, 2 checkpoints);"
    )
    assert "backends 800; read back by backends 0; autovacuum and autoanalyze runs 0" in lines[-1]


def test_a_finished_run_keeps_its_logs_and_reports_and_drops_the_data(tmp_path: Path) -> None:
    for name in ("kafka", "postgres", "redis", "worker-data-0"):
        (tmp_path / name / "inner").mkdir(parents=True)
        (tmp_path / name / "inner" / "segment").write_bytes(b"x" * 1024)
    kept = ["kafka.log", "worker-0.log", "stack.json", "bench-20261205-101010.json"]
    for name in kept:
        (tmp_path / name).write_text("{}")
    bench_e2e.drop_data(tmp_path)
    assert sorted(entry.name for entry in tmp_path.iterdir()) == sorted(kept)
