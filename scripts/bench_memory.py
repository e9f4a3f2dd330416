"""What a flood of ``make bench`` took from the machine's free memory, and what fresh memory
costs on this machine.

Why: on a VM whose hypervisor takes free guest memory back (this project's development machine
does: virtio-balloon free page reporting), the first touch of a page the host took back costs a
fault in the host, and it is charged as CPU to whichever process touches the page first.
Measured there: 3 to 9 CPU s per GiB, against 0.2-0.3 for memory just freed by the guest.
PostgreSQL, Kafka and Redis touch fresh memory for every new page of their files (the page cache
grows by about 20 MiB per 1,000 users in a flood of 100,000), so their CPU per user moves with the
machine's memory history, not only with the service: an A/A ``--compare`` whose sides met
different histories read one commit 25-32 % dearer in PostgreSQL. These figures let a reader
see that share rather than take it for the service's.

- Per flood, from ``/proc/meminfo``: free memory at the start, its lowest point during the flood
  (sampled every half second), what the flood took from it, and how much the page cache grew.
- Once per run, before the first users are seeded, the price. The kernel hands out the memory
  freed last first, and some of it is still the guest's: on the development machine about the
  last 0.6-1.3 GiB freed, written at 0.2-0.3 CPU s per GiB, while every 16 MiB past that cost 3 to
  9. So the bench writes 256 MiB, deletes it and writes it again (the median 16 MiB of that is
  memory just freed), then writes ``PROBE_MIB`` of new pages 16 MiB at a time: the median of the
  last quarter, past any memory the guest still held, is the price of fresh memory. Where both
  figures are about equal the machine does not take memory back and the bound below is zero.
- The bound: memory taken × (first-touch price − reused price), per 1,000 users. It is an upper
  bound: part of the memory taken may have been freed recently and still be the guest's.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MEMINFO = Path("/proc/meminfo")
PROBE_MIB = 2048
REUSED_MIB = 256
PROBE_CHUNK_MIB = 16
_MIB = b"\x01" * (1 << 20)


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo``'s fields in KiB (the lines that carry a size)."""
    fields = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0])
    return fields


def reading() -> dict[str, int]:
    """Free memory and the page cache now, in KiB."""
    fields = parse_meminfo(MEMINFO.read_text())
    return {"free_kib": fields["MemFree"], "cached_kib": fields["Cached"]}


def flood_memory(
    before: dict[str, int], after: dict[str, int], free_kib: Sequence[int], users: int
) -> dict[str, Any]:
    """A flood's use of the free memory, in MiB, from the readings at its ends and the free
    memory sampled along the way (a flood that freed more than it took: 0)."""
    lowest = min(before["free_kib"], after["free_kib"], *free_kib)
    taken = max(0, before["free_kib"] - lowest) / 1024
    grown = max(0, after["cached_kib"] - before["cached_kib"]) / 1024
    return {
        "free_mib_at_start": round(before["free_kib"] / 1024),
        "free_mib_lowest": round(lowest / 1024),
        "taken_mib": round(taken),
        "taken_mib_per_1000_users": round(taken * 1000 / users, 1),
        "page_cache_growth_mib_per_1000_users": round(grown * 1000 / users, 1),
    }


def _write_costs(path: Path, mib: int, chunk_mib: int) -> list[float]:
    """This thread's kernel CPU s per GiB for each ``chunk_mib`` of ``mib`` MiB of new pages."""
    costs = []
    descriptor = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        for _ in range(max(1, mib // chunk_mib)):
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_stime
            for _ in range(chunk_mib):
                os.write(descriptor, _MIB)
            spent = resource.getrusage(resource.RUSAGE_THREAD).ru_stime - before
            costs.append(spent * 1024 / chunk_mib)
    finally:
        os.close(descriptor)
    return costs


def price(
    directory: Path,
    mib: int = PROBE_MIB,
    reused_mib: int = REUSED_MIB,
    chunk_mib: int = PROBE_CHUNK_MIB,
) -> dict[str, Any]:
    """Kernel CPU s per GiB written into fresh pages, and into pages just freed."""
    path = directory / "fresh-memory-probe"
    try:
        _write_costs(path, reused_mib, chunk_mib)
        path.unlink()
        reused = sorted(_write_costs(path, reused_mib, chunk_mib))
        path.unlink()
        first = _write_costs(path, mib, chunk_mib)
    finally:
        path.unlink(missing_ok=True)
    last = sorted(first[len(first) * 3 // 4 :])
    return {
        "probe_mib": mib,
        "first_touch_cpu_s_per_gib": round(last[len(last) // 2], 2),
        "first_write_mean_cpu_s_per_gib": round(sum(first) / len(first), 2),
        "reused_cpu_s_per_gib": round(reused[len(reused) // 2], 2),
    }


def bound_per_1000_users(flood: dict[str, Any], cost: dict[str, Any]) -> float:
    """At most this much of the flood's CPU per 1,000 users was the host's fault-in of memory."""
    extra = max(0.0, cost["first_touch_cpu_s_per_gib"] - cost["reused_cpu_s_per_gib"])
    return round(flood["taken_mib_per_1000_users"] / 1024 * extra, 3)


def lines(floods: Sequence[dict[str, Any]], cost: dict[str, Any] | None) -> list[str]:
    """The printed section: each flood's memory, then the machine's price for fresh memory."""
    out = ["", "memory: what each flood took from free memory (/proc/meminfo, 0.5 s samples)"]
    for f in floods:
        m = f.get("memory")
        if not m:
            continue
        line = (
            f"  {f['users']:>9,} users: took {m['taken_mib']:,} MiB of free memory "
            f"({m['taken_mib_per_1000_users']:.1f} MiB per 1,000 users; free "
            f"{m['free_mib_at_start']:,} MiB at the start, {m['free_mib_lowest']:,} at the "
            f"lowest); page cache +{m['page_cache_growth_mib_per_1000_users']:.1f} MiB per 1,000 "
            "users"
        )
        if cost is not None:
            line += (
                f"; up to {bound_per_1000_users(m, cost):.3f} CPU s per 1,000 users of the "
                "servers' figures is the host handing memory back"
            )
        out.append(line)
    if cost is not None:
        out.append(
            f"  fresh memory on this machine: {cost['first_touch_cpu_s_per_gib']:.2f} CPU s per "
            f"GiB at first touch, {cost['reused_cpu_s_per_gib']:.2f} once the guest has freed it "
            f"(the last quarter of {cost['probe_mib']:,} MiB written before the floods)"
        )
    return out
