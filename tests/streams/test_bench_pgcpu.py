"""PostgreSQL's CPU in a bench flood, by kind of process and by fifth of the flood."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
bench_pgcpu = importlib.import_module("bench_pgcpu")
bench_e2e = importlib.import_module("bench_e2e")


@pytest.mark.parametrize(
    ("title", "kind"),
    [
        # PostgreSQL 18's titles, as ``ps`` shows them on the project's stack.
        ("postgres: postgres migrator 127.0.0.1(35530) idle", "backends"),
        ("postgres: postgres migrator 127.0.0.1(35530) COPY", "backends"),
        ("postgres: autovacuum worker migrator", "autovacuum"),
        ("postgres: autovacuum launcher ", "background"),
        ("postgres: checkpointer ", "background"),
        ("postgres: background writer ", "background"),
        ("postgres: walwriter ", "background"),
        ("postgres: io worker 2", "background"),
        ("postgres: logical replication launcher ", "background"),
    ],
)
def test_a_process_is_named_by_its_title(title: str, kind: str) -> None:
    assert bench_pgcpu.kind_of(title) == kind


def test_the_postmaster_is_background_whatever_its_command_line() -> None:
    assert bench_pgcpu.kind_of("/x/bin/postgres -D /x/data -p 5432", root=True) == "background"


def test_each_kind_is_its_processes_cpu_since_the_first_reading_and_the_rest_is_unseen() -> None:
    split = bench_pgcpu.Split({1: ("background", 1.0), 10: ("backends", 5.0)})
    split.see({1: ("background", 1.2), 10: ("backends", 6.0), 20: ("autovacuum", 0.3)})
    # 20 exits after 0.3 s more than last seen; 30 lives and dies between two readings.
    split.see({1: ("background", 1.3), 10: ("backends", 7.5)})
    total = (1.3 - 1.0) + (7.5 - 5.0) + 0.6 + 0.4
    spent = split.seconds(total)
    assert spent["backends"] == pytest.approx(2.5)
    assert spent["background"] == pytest.approx(0.3)
    assert spent["autovacuum"] == pytest.approx(0.3)
    assert spent["unseen"] == pytest.approx(0.7)
    assert sum(spent.values()) == pytest.approx(total)


def test_a_pid_taken_by_a_new_process_counts_the_new_process_from_zero() -> None:
    split = bench_pgcpu.Split({10: ("backends", 5.0), 11: ("autovacuum", 3.0)})
    split.see({10: ("backends", 0.4), 11: ("backends", 3.5)})
    spent = split.seconds(0.4 + 3.5)
    assert spent["backends"] == pytest.approx(3.9)
    assert spent["autovacuum"] == 0.0


def test_a_total_read_a_little_before_the_last_reading_leaves_nothing_negative() -> None:
    split = bench_pgcpu.Split({10: ("backends", 0.0)})
    split.see({10: ("backends", 2.01)})
    assert split.seconds(2.0)["unseen"] == 0.0


def test_fifths_are_cpu_per_1000_users_between_their_ends() -> None:
    # 1,000 users; 0.1 s of CPU per 100 users in the first half, 0.2 s in the second, 0.5 s
    # before the first answer.
    samples = [(0, 10.0), (0, 10.5)]
    cpu = 10.5
    for done in range(100, 1001, 100):
        cpu += 0.1 if done <= 500 else 0.2
        samples.append((done, cpu))
    assert bench_pgcpu.by_fifths(samples, 1000) == pytest.approx([3.5, 1.0, 1.5, 2.0, 2.0])


def test_the_ends_of_a_fifth_are_interpolated_between_the_samples_around_them() -> None:
    samples = [(0, 0.0), (300, 0.3), (1000, 1.7)]  # 1 ms a user, then 2
    assert bench_pgcpu.by_fifths(samples, 1000) == pytest.approx([1.0, 1.5, 2.0, 2.0, 2.0])


def test_a_fifth_past_the_last_sample_is_none() -> None:
    samples = [(0, 0.0), (500, 0.5)]
    assert bench_pgcpu.by_fifths(samples, 1000) == [1.0, 1.0, None, None, None]


def test_the_lines_give_each_kind_and_each_fifth_of_each_flood() -> None:
    flood = {
        "users": 1_000_000,
        "postgres_cpu": {
            "by_kind_per_1000_users": {
                "backends": 0.137,
                "autovacuum": 0.025,
                "background": 0.011,
                "unseen": 0.002,
            },
            "by_fifth_per_1000_users": [0.12, 0.13, 0.18, None, 0.19],
        },
    }
    lines = bench_e2e.postgres_cpu_lines([flood, {"users": 10}])
    assert lines[-1] == (
        "  1,000,000 users: backends 0.137, autovacuum 0.025, background 0.011, unseen 0.002; "
        "fifths 0.120 0.130 0.180 – 0.190"
    )
    assert len(lines) == 3
