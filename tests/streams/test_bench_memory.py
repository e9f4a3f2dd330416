"""What a bench flood took from free memory, and the machine's price for fresh memory."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
bench_memory = importlib.import_module("bench_memory")

MEMINFO = """\
MemTotal:       24683784 kB
MemFree:        14455764 kB
MemAvailable:   24072456 kB
Buffers:           45304 kB
Cached:          9431792 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""


def test_meminfo_fields_are_kib_and_counts_stay_as_given() -> None:
    fields = bench_memory.parse_meminfo(MEMINFO)
    assert fields["MemFree"] == 14455764
    assert fields["Cached"] == 9431792
    assert fields["HugePages_Total"] == 0


def test_the_machine_reading_has_free_memory_and_page_cache() -> None:
    now = bench_memory.reading()
    assert now["free_kib"] > 0
    assert now["cached_kib"] >= 0


def test_a_flood_took_what_free_memory_lost_at_its_lowest() -> None:
    before = {"free_kib": 10_000 * 1024, "cached_kib": 2_000 * 1024}
    after = {"free_kib": 9_500 * 1024, "cached_kib": 3_000 * 1024}
    m = bench_memory.flood_memory(before, after, [9_000 * 1024, 8_000 * 1024], users=50_000)
    assert m == {
        "free_mib_at_start": 10_000,
        "free_mib_lowest": 8_000,
        "taken_mib": 2_000,
        "taken_mib_per_1000_users": 40.0,
        "page_cache_growth_mib_per_1000_users": 20.0,
    }


def test_a_flood_that_freed_memory_took_none() -> None:
    before = {"free_kib": 5_000 * 1024, "cached_kib": 3_000 * 1024}
    after = {"free_kib": 6_000 * 1024, "cached_kib": 2_000 * 1024}
    m = bench_memory.flood_memory(before, after, [7_000 * 1024], users=1_000)
    assert m["taken_mib"] == 0
    assert m["free_mib_lowest"] == 5_000  # never above where it started
    assert m["page_cache_growth_mib_per_1000_users"] == 0.0


def test_the_bound_is_the_memory_taken_at_the_extra_price() -> None:
    flood = {"taken_mib_per_1000_users": 30.72}  # 0.03 GiB
    cost = {"first_touch_cpu_s_per_gib": 4.2, "reused_cpu_s_per_gib": 0.2}
    assert bench_memory.bound_per_1000_users(flood, cost) == pytest.approx(0.12)
    cheap = {"first_touch_cpu_s_per_gib": 0.19, "reused_cpu_s_per_gib": 0.2}
    assert bench_memory.bound_per_1000_users(flood, cheap) == 0.0


def test_the_price_probe_writes_twice_and_leaves_nothing(tmp_path: Path) -> None:
    cost = bench_memory.price(tmp_path, mib=8, reused_mib=4, chunk_mib=1)
    assert cost["probe_mib"] == 8
    assert cost["first_touch_cpu_s_per_gib"] >= 0
    assert cost["first_write_mean_cpu_s_per_gib"] >= 0
    assert cost["reused_cpu_s_per_gib"] >= 0
    assert list(tmp_path.iterdir()) == []


def test_the_printed_lines_name_each_flood_and_the_price() -> None:
    floods = [
        {
            "users": 50_000,
            "memory": {
                "free_mib_at_start": 14_046,
                "free_mib_lowest": 11_870,
                "taken_mib": 2_176,
                "taken_mib_per_1000_users": 43.5,
                "page_cache_growth_mib_per_1000_users": 29.8,
            },
        },
        {"users": 10_000},  # a report from before the memory figures: skipped
    ]
    cost = {
        "probe_mib": 2048,
        "first_touch_cpu_s_per_gib": 3.98,
        "reused_cpu_s_per_gib": 0.21,
    }
    text = "\n".join(bench_memory.lines(floods, cost))
    assert "50,000 users: took 2,176 MiB of free memory (43.5 MiB per 1,000 users" in text
    assert "free 14,046 MiB at the start, 11,870 at the lowest" in text
    assert "up to 0.160 CPU s per 1,000 users" in text
    assert "3.98 CPU s per GiB at first touch, 0.21 once the guest has freed it" in text
    assert "10,000 users" not in text
    assert "up to" not in "\n".join(bench_memory.lines(floods, None))
