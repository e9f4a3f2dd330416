"""PostgreSQL's CPU in a flood of ``make bench``, split by what its processes do, and how it
moves from the flood's first fifth to its last.

Why split it: one figure per 1,000 users hides two costs that grow differently. Client backends
run the service's statements, about the same work for every user. Autovacuum and the processes
that write dirty pages out (checkpointer, background writer, WAL writer, I/O workers) keep up
with tables that grow with every user. Autovacuum looks at a database once a minute, so it does
not run at all in a 20-second flood of 100,000 users (their upkeep comes after it); in a
million-user flood it and the writers are a fifth of PostgreSQL's CPU. A flood that grows dearer
as it goes shows it in its fifths.

Read from ``/proc`` every half second: each process's own CPU, named by the title PostgreSQL
gives it. A process that exits between two readings takes its last half second with it (its
time moves into the postmaster's reaped-children counters); that, and every process too short
to be seen at all, is ``unseen``, so the kinds always add up to PostgreSQL's total.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

KINDS = ("backends", "autovacuum", "background", "unseen")

# A process's title after "postgres: ", up to its first space, for the processes that are not
# client backends (whose title starts with the user's name).
_BACKGROUND = ("checkpointer", "background", "walwriter", "io", "logical", "archiver", "startup")

Reading = dict[int, tuple[str, float]]  # pid -> (kind, own CPU seconds)


def kind_of(title: str, *, root: bool = False) -> str:
    """The kind of a PostgreSQL process from its title (``/proc/<pid>/cmdline``)."""
    if root:
        return "background"  # the postmaster
    name = title.removeprefix("postgres:").strip()
    if name.startswith("autovacuum worker"):
        return "autovacuum"
    if name.startswith("autovacuum launcher") or name.split(" ", 1)[0] in _BACKGROUND:
        return "background"
    return "backends"


@dataclass
class Split:
    """Own CPU per kind between a first reading and the last, from readings along the way."""

    first: Reading
    last: Reading = field(default_factory=dict)

    def see(self, reading: Reading) -> None:
        self.last.update(reading)

    def seconds(self, total: float) -> dict[str, float]:
        """Seconds per kind; ``total`` is the whole tree's, reaped children included."""
        spent = dict.fromkeys(KINDS, 0.0)
        for pid, (kind, cpu) in self.last.items():
            before = self.first.get(pid)
            if before is not None and (before[0] != kind or before[1] > cpu):
                before = None  # the pid of a process that exited, taken by a new one
            spent[kind] += cpu - (before[1] if before is not None else 0.0)
        spent["unseen"] = max(0.0, total - sum(spent.values()))
        return spent


def by_fifths(samples: Sequence[tuple[int, float]], users: int) -> list[float | None]:
    """CPU seconds per 1,000 users in each fifth of a flood's answered users.

    ``samples``: (users answered, CPU seconds) in time order, the first taken as the flood
    started. The CPU at each fifth's ends is interpolated between the samples around it; what was
    spent before the first answer counts in the first fifth. None past the last sample.
    Outcomes become visible a Kafka transaction at a time, so each end is blurred by about one
    transaction's users: nothing at a million users, much in a flood of 10,000.
    """
    answered = [done for done, _ in samples]

    def cpu_at(done: float) -> float | None:
        i = bisect_left(answered, done)
        if i == 0:
            return samples[0][1]
        if i == len(samples):
            return None
        (a0, c0), (a1, c1) = samples[i - 1], samples[i]
        return c0 + (c1 - c0) * (done - a0) / (a1 - a0)

    fifth = users / 5
    ends = [cpu_at(fifth * k) for k in range(6)]
    return [
        None if lo is None or hi is None else round((hi - lo) * 1000 / fifth, 3)
        for lo, hi in zip(ends, ends[1:], strict=False)
    ]
