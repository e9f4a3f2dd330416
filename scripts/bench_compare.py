"""``scripts/bench --compare REF``: is HEAD faster or slower than REF end to end, at this noise?

Why runs in turns rather than against an old report: on a shared machine the speed drifts
(other work, caches, thermals) by more than most changes move the figures. Runs of both sides
taken in turns see the same drift, and the spread of each side's runs says how far the figures
can be trusted.

- Both sides are commits: REF and the committed HEAD, each checked out in a temporary git
  worktree. Uncommitted changes are not measured (commit them first); the report says when the
  working tree differed from HEAD.
- A run is that side's own ``scripts/bench_e2e.py``, started with this checkout's ``.venv``
  interpreter, its worktree as working directory and as ``PYTHONPATH``: the bench imports that
  side's code, and so does its worker (``python -m streams.cli`` started in that directory).
  Before the first run, each side is checked to import ``streams``, ``agents``, ``schemas`` and
  ``sql`` from its worktree.
- Each run starts its own fresh stack (the side's bench wipes and starts one in its worktree): no
  run inherits another's Kafka log, tables or caches, and each side runs its own stack code.
- Before every run the stacks of all earlier runs are deleted, whichever side left them, so that
  every run starts from the same machine: the previous run's files just freed, no other stack's
  files cached. Without it the sides met different memory histories and one of them paid for
  fresh memory: on this VM the hypervisor takes free guest memory back and first touches
  of it cost 3 to 9 CPU s per GiB against 0.2-0.3 for memory just freed (``bench_memory``). An
  A/A run (one commit on both sides) read HEAD 11-12 % slower and its PostgreSQL 25-32 % dearer
  in every pair, 10 % of the machine in the kernel's copy into fresh page-cache pages on HEAD's
  side against 0.7 % on REF's;
  with the stacks deleted before each run the same A/A read users/s +2.2 % and PostgreSQL -1.7 %.
- The order alternates: REF then HEAD in odd pairs, HEAD then REF in even ones, so that a drift
  during the session falls on both sides alike.
- Each run floods ``--users`` freshly seeded users once (``--flood-only`` where the side's bench
  has it, else ``--quick`` so its later phases are short: the flood comes first either way, so
  what follows cannot touch its figures). Compared: users/s and the worker's CPU s per 1,000 users.
  Both sides run without the warm-up flood (``BENCH_WARM_USERS=0``; benches older than it have
  none), so each side's flood meets a fresh broker alike.
- The verdict per metric is an exact two-sided Mann-Whitney rank test of the REF runs against the
  HEAD runs (every split of the pooled runs enumerated): "faster" or "slower" needs p <= 0.10
  (90 % confidence), otherwise "cannot tell at this noise". With 3 pairs that happens only when
  the two ranges do not overlap at all; with 1 pair never.

Any failure is one line on stderr and a non-zero exit; a failed run's output and logs are kept
under ``.stack/compare``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / ".stack" / "compare"
DEFAULT_PAIRS = 3
DEFAULT_USERS = 20_000
ALPHA = 0.10  # a verdict needs p <= ALPHA: 90 % confidence
EXACT_MOST = 200_000  # splits enumerated exactly up to this many (10 pairs: 184,756)
SIDES = ("REF", "HEAD")
# What each metric is called, which way is better, and the words for HEAD being better / worse.
METRICS: dict[str, tuple[str, bool, str, str]] = {
    "users_per_s": ("users/s", True, "HEAD faster", "HEAD slower"),
    "worker_cpu_s_per_1000_users": (
        "worker CPU s/1,000 users",
        False,
        "HEAD uses less CPU",
        "HEAD uses more CPU",
    ),
    "postgres_cpu_s_per_1000_users": (
        "PostgreSQL CPU s/1,000 users",
        False,
        "HEAD costs PG less",
        "HEAD costs PG more",
    ),
}
CANNOT_TELL = "cannot tell at this noise"
_IMPORT_CHECK = (
    "import json, agents, schemas, sql, streams; "
    "print(json.dumps([m.__file__ for m in (agents, schemas, sql, streams)]))"
)


class CompareError(Exception):
    """Why the comparison cannot go on, worded as the one line the operator sees."""


# --- pure parts: order, statistics, report ------------------------------------------------------


def run_order(pairs: int) -> list[tuple[int, str]]:
    """(pair, side) in the order run: REF first in odd pairs, HEAD first in even ones."""
    order = []
    for pair in range(1, pairs + 1):
        sides = SIDES if pair % 2 else tuple(reversed(SIDES))
        order += [(pair, side) for side in sides]
    return order


def midranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..N of ``values`` in their order, tied values sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda index: values[index])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def rank_sum_p(first: Sequence[float], second: Sequence[float]) -> float:
    """Exact two-sided p of the Mann-Whitney (Wilcoxon rank-sum) test, ties by mid-ranks.

    The share of all ways to split the pooled runs into groups of these sizes whose first
    group's rank sum lies at least as far from its mean as the one observed. Beyond
    ``EXACT_MOST`` splits, a fixed-seed sample of 100,000 of them.
    """
    n, total = len(first), len(first) + len(second)
    if n == 0 or n == total:
        return 1.0
    ranks = midranks([*first, *second])
    expected = n * (total + 1) / 2
    observed = abs(sum(ranks[:n]) - expected) - 1e-9
    if math.comb(total, n) <= EXACT_MOST:
        splits = list(itertools.combinations(range(total), n))
        extreme = sum(abs(sum(ranks[i] for i in split) - expected) >= observed for split in splits)
        return extreme / len(splits)
    draw = random.Random(20)
    samples = 100_000
    extreme = sum(abs(sum(draw.sample(ranks, n)) - expected) >= observed for _ in range(samples))
    return (extreme + 1) / (samples + 1)


def distribution(values: Sequence[float]) -> dict[str, Any]:
    return {
        "values": list(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def verdict(metric: str, ref: Sequence[float], head: Sequence[float]) -> dict[str, Any]:
    """Both distributions, the median difference and the verdict of one metric."""
    _, higher_is_better, better, worse = METRICS[metric]
    p = rank_sum_p(ref, head)
    ref_median, head_median = statistics.median(ref), statistics.median(head)
    change = (head_median - ref_median) * 100 / ref_median if ref_median else math.nan
    if p > ALPHA or head_median == ref_median:
        word = CANNOT_TELL
    else:
        word = better if (head_median > ref_median) == higher_is_better else worse
    return {
        "ref": distribution(ref),
        "head": distribution(head),
        "head_vs_ref_median_pct": None if math.isnan(change) else round(change, 1),
        "p_value": round(p, 4),
        "verdict": word,
    }


def rule_text(pairs: int) -> str:
    """The verdict rule in words, with what it means for this many pairs."""
    smallest = 2 / math.comb(2 * pairs, pairs)
    if smallest > ALPHA:
        reach = f"with {pairs} pair{'s' if pairs > 1 else ''} it can never be reached"
    else:
        reach = (
            f"the smallest p {pairs} pairs can give is {smallest:.3g}, when the two sides' "
            "ranges do not overlap"
        )
    return (
        "exact two-sided Mann-Whitney rank test of the REF runs against the HEAD runs; "
        f"a verdict needs p <= {ALPHA:g} ({100 * (1 - ALPHA):.0f} % confidence), "
        f"else '{CANNOT_TELL}'; {reach}"
    )


def summary(runs: Sequence[dict[str, Any]], pairs: int) -> dict[str, Any]:
    """The metrics section of the JSON: per metric, both distributions and the verdict."""
    metrics = {}
    for metric in METRICS:
        values = {side: [run[metric] for run in runs if run["side"] == side] for side in SIDES}
        metrics[metric] = verdict(metric, values["REF"], values["HEAD"])
    return {"rule": rule_text(pairs), "alpha": ALPHA, "metrics": metrics}


def _number(metric: str, value: float) -> str:
    return f"{value:,.0f}" if metric == "users_per_s" else f"{value:.3f}"


def table(report: dict[str, Any]) -> str:
    """The printed comparison: each run, then each metric's distributions and verdict."""
    ref, head = report["ref"], report["head"]
    lines = [
        f"bench --compare: REF {ref['commit']} ({ref['subject']}) vs HEAD {head['commit']}"
        + (" (the working tree's uncommitted changes are not measured)" if head["dirty"] else ""),
        f"{report['pairs']} pair(s) of runs, {report['users']:,} freshly seeded users each; every "
        "run on its own fresh stack, earlier runs' stacks deleted first, the order alternating "
        "(REF first in odd pairs)",
        "",
        f"  {'pair':>4}  {'side':<4}  {'commit':<10} {'users/s':>9}  "
        f"{'worker CPU s/1,000 users':>24}  {'PostgreSQL CPU s/1,000 users':>28}",
    ]
    for run in report["runs"]:
        lines.append(
            f"  {run['pair']:>4}  {run['side']:<4}  {run['commit']:<10} "
            f"{run['users_per_s']:>9,.0f}  {run['worker_cpu_s_per_1000_users']:>24.3f}  "
            f"{run['postgres_cpu_s_per_1000_users']:>28.3f}"
        )
    lines += [
        "",
        f"  {'metric':<29} {'REF median (min-max)':<24} {'HEAD median (min-max)':<24} "
        f"{'HEAD vs REF':>11} {'p':>6}  verdict",
    ]
    for metric, result in report["metrics"].items():
        name = METRICS[metric][0]
        shown = {
            side: f"{_number(metric, result[side]['median'])} "
            f"({_number(metric, result[side]['min'])}-{_number(metric, result[side]['max'])})"
            for side in ("ref", "head")
        }
        change = result["head_vs_ref_median_pct"]
        lines.append(
            f"  {name:<29} {shown['ref']:<24} {shown['head']:<24} "
            f"{'n/a' if change is None else f'{change:+.1f} %':>11} {result['p_value']:>6.3f}  "
            f"{result['verdict']}"
        )
    lines += ["", f"rule: {report['rule']}"]
    return "\n".join(lines)


# --- git ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    sha: str
    short: str
    subject: str


def git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompareError(f"git {args[0]}: {exc}") from None
    if done.returncode != 0:
        last = ([line for line in done.stderr.splitlines() if line.strip()] or ["?"])[-1]
        raise CompareError(f"git {' '.join(args[:2])}: {last.strip()}")
    return done.stdout.strip()


def resolve(ref: str) -> Commit:
    """The commit ``ref`` names, or a one-line error saying it names none."""
    if ref.startswith("-"):
        raise CompareError(f"not a commit: {ref!r}")
    try:
        sha = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except CompareError:
        raise CompareError(f"not a commit in this repository: {ref!r}") from None
    short = git("rev-parse", "--short", sha)
    subject = git("log", "-1", "--format=%s", sha)
    return Commit(sha, short, subject if len(subject) <= 60 else subject[:59] + "…")


def dirty() -> bool:
    return bool(git("status", "--porcelain", "--untracked-files=no"))


# --- one side ----------------------------------------------------------------------------------


@dataclass
class Side:
    """One side's worktree and how its bench is run."""

    name: str
    commit: Commit
    worktree: Path

    @property
    def env(self) -> dict[str, str]:
        # No warm-up flood on either side: a bench that has one (HEAD's, from 2026-12-02) would
        # otherwise measure a warm broker against an older bench's cold one.
        return {
            **os.environ,
            "PYTHONPATH": str(self.worktree),
            "BENCH_WARM_USERS": "0",
            "BENCH_MEMORY_PRICE": "0",
        }

    @property
    def bench(self) -> Path:
        return self.worktree / "scripts" / "bench_e2e.py"

    def check(self) -> list[str]:
        """The bench's extra options for this side; fails unless it imports its own code."""
        if not self.bench.is_file():
            raise CompareError(
                f"{self.name} {self.commit.short} has no scripts/bench_e2e.py to run"
            )
        done = subprocess.run(
            [sys.executable, "-c", _IMPORT_CHECK],
            cwd=self.bench.parent,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        try:
            files = [Path(path) for path in json.loads(done.stdout)]
        except ValueError:
            last = ([line for line in done.stderr.splitlines() if line.strip()] or ["?"])[-1]
            raise CompareError(f"{self.name}'s code does not import: {last}") from None
        stray = [path for path in files if not path.is_relative_to(self.worktree)]
        if stray:
            raise CompareError(
                f"{self.name}'s bench would import {stray[0]}, not its worktree {self.worktree}"
            )
        options = ["--quick"]
        if "--flood-only" in self.bench.read_text():
            options.append("--flood-only")
        return options

    def run(self, pair: int, users: int, options: list[str], out_dir: Path) -> dict[str, Any]:
        """One flood on a fresh stack; the run's users/s and worker CPU per 1,000 users."""
        stem = f"{pair}-{self.name.lower()}"
        report_path, output = out_dir / f"{stem}.json", out_dir / f"{stem}.out"
        argv = [
            sys.executable,
            str(self.bench),
            "--users",
            str(users),
            "--json",
            str(report_path),
            *options,
        ]
        with output.open("wb") as sink:
            process = subprocess.Popen(
                argv, cwd=self.worktree, env=self.env, stdout=sink, stderr=subprocess.STDOUT
            )
            try:
                code = process.wait()
            except KeyboardInterrupt:
                # The bench got the same SIGINT and stops its stack; wait for that before the
                # worktree goes away under it.
                _wait_out(process)
                raise
        if code != 0:
            self.keep_logs(out_dir / f"{stem}-logs")
            reason = _last_bench_line(output)
            raise CompareError(
                f"{self.name} run of pair {pair} failed: {reason} (output {output}, logs in "
                f"{out_dir / f'{stem}-logs'})"
            )
        try:
            flood = json.loads(report_path.read_text())["floods"][0]
            return {
                "pair": pair,
                "side": self.name,
                "commit": self.commit.short,
                "users_per_s": float(flood["users_per_s"]),
                "worker_cpu_s_per_1000_users": float(flood["cpu_s_per_1000_users"]["worker"]),
                "postgres_cpu_s_per_1000_users": float(flood["cpu_s_per_1000_users"]["postgres"]),
                "report": str(report_path),
            }
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise CompareError(
                f"{self.name}'s bench report {report_path} lacks the flood's figures ({exc!r})"
            ) from None

    @property
    def stack(self) -> Path:
        return self.worktree / ".stack" / "bench"

    def keep_logs(self, into: Path) -> None:
        into.mkdir(parents=True, exist_ok=True)
        for log in self.stack.glob("*.log"):
            shutil.copy2(log, into / log.name)

    def delete_stack(self) -> None:
        """Delete the stack an earlier run left (its bench stopped it; reports live elsewhere)."""
        shutil.rmtree(self.stack, ignore_errors=True)

    def stack_down(self) -> None:
        """Stop whatever stack this side's bench may have left (an interrupted run)."""
        subprocess.run(
            [sys.executable, "-m", "streams.cli", "stack", "down", "--dir", ".stack/bench"],
            cwd=self.worktree,
            env=self.env,
            capture_output=True,
            timeout=180,
            check=False,
        )


def _wait_out(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=180)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


def _last_bench_line(output: Path) -> str:
    try:
        lines = [line for line in output.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no output)"
    failure = [line for line in lines if line.startswith("bench:")]
    return " ".join((failure or lines or ["(no output)"])[-1].split())[:300]


# --- the comparison ----------------------------------------------------------------------------


def progress(line: str) -> None:
    print(f"  … {line}", file=sys.stderr, flush=True)


def compare(ref: Commit, head: Commit, pairs: int, users: int, out_dir: Path) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="migrator-compare-"))
    base.chmod(0o755)  # PostgreSQL runs as ``nobody`` under root and must reach its data
    sides = {"REF": Side("REF", ref, base / "ref"), "HEAD": Side("HEAD", head, base / "head")}
    added: list[Side] = []
    runs: list[dict[str, Any]] = []
    try:
        for side in sides.values():
            git("worktree", "add", "--detach", "--quiet", str(side.worktree), side.commit.sha)
            added.append(side)
        options = {name: side.check() for name, side in sides.items()}
        for pair, name in run_order(pairs):
            side = sides[name]
            for each in sides.values():
                each.delete_stack()
            progress(f"pair {pair}/{pairs}: {name} {side.commit.short}, {users:,} users")
            run = side.run(pair, users, options[name], out_dir)
            runs.append(run)
            progress(
                f"  {run['users_per_s']:,.0f} users/s, worker "
                f"{run['worker_cpu_s_per_1000_users']:.3f}, PostgreSQL "
                f"{run['postgres_cpu_s_per_1000_users']:.3f} CPU s per 1,000 users"
            )
    finally:
        for side in added:
            side.stack_down()
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(side.worktree)],
                cwd=ROOT,
                capture_output=True,
                timeout=120,
                check=False,
            )
        shutil.rmtree(base, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True, check=False)
    return {"runs": runs, **summary(runs, pairs), "bench_options": options}


def positive(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench --compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--compare", metavar="REF", required=True, help="the reference commit")
    parser.add_argument(
        "--pairs", type=positive, default=DEFAULT_PAIRS, help=f"runs per side ({DEFAULT_PAIRS})"
    )
    parser.add_argument(
        "--users",
        type=positive,
        default=DEFAULT_USERS,
        help=f"users per flood ({DEFAULT_USERS:,})",
    )
    parser.add_argument("--json", metavar="PATH", help="where to write the JSON report")
    args = parser.parse_args(argv)
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%d-%H%M%S")
    out_dir = OUT_DIR / stamp
    json_path = Path(args.json) if args.json else OUT_DIR / f"compare-{stamp}.json"
    try:
        ref, head = resolve(args.compare), resolve("HEAD")
        head_dirty = dirty()
        out_dir.mkdir(parents=True, exist_ok=True)
        results = compare(ref, head, args.pairs, args.users, out_dir)
        report = {
            "started_at": started_at.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "ref": {
                "name": args.compare,
                "commit": ref.short,
                "sha": ref.sha,
                "subject": ref.subject,
            },
            "head": {
                "commit": head.short,
                "sha": head.sha,
                "subject": head.subject,
                "dirty": head_dirty,
            },
            "pairs": args.pairs,
            "users": args.users,
            "machine": {
                "cpus": os.cpu_count(),
                "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            },
            **results,
        }
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    except CompareError as exc:
        print(f"bench --compare: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench --compare: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one-line promise holds for surprises too
        flat = " ".join(str(exc).split())[:300]
        print(f"bench --compare: unexpected {type(exc).__name__}: {flat}", file=sys.stderr)
        return 1
    print(table(report))
    print(f"\nJSON: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
