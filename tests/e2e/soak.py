"""``make soak``: many worker SIGKILLs, interleaved with every other fault, during a long flood;
and many such runs, each with its own seed.

The CI test (tests/e2e/test_faults.py) injects each fault kind once, in one schedule; a bug that
needs the tenth restart, a restart right after a broker came back, or one schedule in two, only
shows over many. This runs the same machinery (``faults.run_faults``) with ``SOAK_KILLS`` worker
SIGKILLs (default 25) and the other fault kinds spread between them, on ``SOAK_USERS`` users
(default 20,000), ``SOAK_RUNS`` times (default 1), each run on a fresh stack of its own with the
next seed (``SOAK_SEED``, default a new one: the faults' order, the worker hit, the moment, the
restart delay and the flood follow it). ``--ci`` runs the CI test's schedule instead (3,000
users, each fault kind once). It prints, per run, the recovery table, self-exits and checks,
then one line per run and a total (lost, duplicated, untrue, self-exits, recovery), and writes
them as JSON under .stack/soak/ (or ``--json PATH``) with the workers' logs beside it.

Run by ``scripts/soak`` (``make soak``). It lives here, beside the fault machinery it drives
(``faults.py``, ``harness.py``): a test tool, not part of the service. Run as a script, its own
folder is on Python's path, so those modules import like they do in the tests.

Exit status: 0 when every check passed and no worker exited by itself, 1 when the run found
problems, 2 when the run itself could not go on. Errors are one line, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sys
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import pytest
from faults import (
    CI_FAULTS,
    FaultRunError,
    RunConfig,
    RunReport,
    describe_failures,
    run_faults,
    soak_schedule,
)
from harness import Stack, start_stack, stop_stack

ROOT = Path(__file__).resolve().parents[2]

# Recovery is a measurement here: the bound only decides whether a fault counts as recovered.
MAX_RECOVERY_S = 60.0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"soak: {name} must be a whole number, not {raw!r}") from None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--kills",
        type=int,
        default=_env_int("SOAK_KILLS", 25),
        help="worker SIGKILLs (env SOAK_KILLS, default 25)",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=_env_int("SOAK_USERS", 20_000),
        help="seeded users (env SOAK_USERS, default 20000)",
    )
    parser.add_argument("--workers", type=int, default=2, help="workers in the group")
    parser.add_argument(
        "--runs",
        type=int,
        default=_env_int("SOAK_RUNS", 1),
        help="fault runs, each on a fresh stack with the next seed (env SOAK_RUNS, default 1)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=_env_int("SOAK_SEED", 0) or None,
        help="the first run's seed (env SOAK_SEED; default: a new one, printed)",
    )
    parser.add_argument(
        "--ci",
        action="store_true",
        default=os.environ.get("SOAK_CI", "") not in ("", "0"),
        help="the CI test's schedule (3,000 users, each fault kind once) instead of --kills "
        "(env SOAK_CI=1)",
    )
    parser.add_argument(
        "--recovery-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for recovery from one fault",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="the JSON figures (default .stack/soak/soak-<time>.json)",
    )
    args = parser.parse_args(argv)
    if args.kills < 0 or args.users < 1 or args.workers < 2 or args.runs < 1:
        parser.error("need --kills >= 0, --users >= 1, --workers >= 2 and --runs >= 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path: Path = args.json or ROOT / ".stack" / "soak" / f"soak-{stamp}.json"
    first = args.seed or random.SystemRandom().randrange(1, 1_000_000)
    users, faults = (3000, CI_FAULTS) if args.ci else (args.users, soak_schedule(args.kills))
    print(
        f"soak: {args.runs} run(s) from seed {first}: {users} users, {len(faults)} faults "
        f"({faults.count('worker_kill')} worker kills), {args.workers} workers each",
        flush=True,
    )
    lines: list[RunLine] = []
    for number in range(args.runs):
        seed = first + number
        config = RunConfig(
            users=users,
            faults=faults,
            workers=args.workers,
            recovery_timeout_s=args.recovery_timeout,
            seed=seed,
        )
        path = json_path if args.runs == 1 else json_path.with_name(f"{json_path.stem}-{seed}.json")
        print(f"\nsoak: run {number + 1} of {args.runs}, seed {seed}; starting a stack", flush=True)
        line = _one_run(config, path)
        if line is None:
            return 2
        lines.append(line)
        print(line.render(), flush=True)
    print("\nsoak: one line per run")
    for line in lines:
        print("  " + line.render())
    total = RunLine.total(lines)
    print("  " + total.render())
    summary = json_path.with_name(f"{json_path.stem}-summary.json")
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps([asdict(x) for x in [*lines, total]], indent=2) + "\n")
    print(f"summary: {summary}")
    return 0 if all(not line.failures for line in lines) else 1


@dataclass
class RunLine:
    """One run in one line: what the promise is about."""

    seed: int | str
    lost: int
    duplicated: int
    untrue: int
    self_exits: int
    unrecovered: int
    recovery_max_s: float | None
    recovery_by_fault: dict[str, float | None]
    seconds: float
    failures: list[str]

    @classmethod
    def of(cls, seed: int, report: RunReport, failures: list[str]) -> RunLine:
        counts = report.problem_counts()
        lost = counts.get("a.missing", 0)
        duplicated = counts.get("a.duplicate", 0)
        recoveries = [r.recovery_s for r in report.recoveries]
        by_fault: dict[str, float | None] = {}  # the slowest of each kind; None: not recovered
        for r in report.recoveries:
            if r.fault in by_fault and by_fault[r.fault] is None:
                continue
            slowest = by_fault.get(r.fault) or 0.0
            by_fault[r.fault] = None if r.recovery_s is None else max(slowest, r.recovery_s)
        return cls(
            seed=seed,
            lost=lost,
            duplicated=duplicated,
            untrue=sum(counts.values()) - lost - duplicated,
            self_exits=len(report.self_exits),
            unrecovered=sum(1 for r in recoveries if r is None),
            recovery_max_s=max((r for r in recoveries if r is not None), default=None),
            recovery_by_fault=by_fault,
            seconds=report.duration_s,
            failures=failures,
        )

    @classmethod
    def total(cls, lines: list[RunLine]) -> RunLine:
        by_fault: dict[str, float | None] = {}
        for line in lines:
            for fault, value in line.recovery_by_fault.items():
                seen = by_fault.get(fault, 0.0)
                by_fault[fault] = None if value is None or seen is None else max(seen, value)
        maxima = [x.recovery_max_s for x in lines if x.recovery_max_s is not None]
        return cls(
            seed=f"total of {len(lines)}",
            lost=sum(x.lost for x in lines),
            duplicated=sum(x.duplicated for x in lines),
            untrue=sum(x.untrue for x in lines),
            self_exits=sum(x.self_exits for x in lines),
            unrecovered=sum(x.unrecovered for x in lines),
            recovery_max_s=max(maxima, default=None),
            recovery_by_fault=by_fault,
            seconds=round(sum(x.seconds for x in lines), 1),
            failures=[f for x in lines for f in x.failures],
        )

    def render(self) -> str:
        recovery = "-" if self.recovery_max_s is None else f"{self.recovery_max_s:.1f}"
        faults = ", ".join(
            f"{k} {'-' if v is None else f'{v:.1f}'}"
            for k, v in sorted(self.recovery_by_fault.items())
        )
        verdict = "ok" if not self.failures else f"FAILED ({len(self.failures)})"
        return (
            f"seed {self.seed}: lost {self.lost}, duplicated {self.duplicated}, untrue "
            f"{self.untrue}, self-exits {self.self_exits}, not recovered {self.unrecovered}, "
            f"recovery max {recovery} s ({faults}), {self.seconds:.0f} s: {verdict}"
        )


def _one_run(config: RunConfig, json_path: Path) -> RunLine | None:
    """One fault run on a stack of its own; its line, or None when it could not go on."""
    try:
        stack = start_stack()
    except pytest.fail.Exception as exc:
        print(f"soak: {str(exc).strip().splitlines()[-1]}", file=sys.stderr)
        return None
    report: RunReport | None = None
    try:
        report = asyncio.run(run_faults(config, stack, log=_print))
    except FaultRunError as exc:
        print(f"soak: the run could not go on: {_one_line(exc)}", file=sys.stderr)
        return None
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback; worker logs are kept
        print(f"soak: the run failed: {_one_line(exc)}", file=sys.stderr)
        return None
    finally:
        _keep_logs(stack, json_path.with_suffix(""))
        stop_stack(stack)
    print(report.render(examples=8))
    report.write_json(json_path)
    print(f"\nfigures: {json_path}\nworker logs: {json_path.with_suffix('')}/")
    failures = describe_failures(report, max_recovery_s=MAX_RECOVERY_S)
    for failure in failures:
        print(f"soak: seed {config.seed}: {failure}", file=sys.stderr)
    return RunLine.of(config.seed, report, failures)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends the run like Ctrl-C does (asyncio cancels the run, which stops its workers;
    then the stack is stopped), rather than killing this process and leaking both."""
    signal.raise_signal(signal.SIGINT)


def _print(message: str) -> None:
    print(message, flush=True)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _keep_logs(stack: Stack, directory: Path) -> None:
    """The workers' and servers' logs, for a post-mortem of whatever the run found."""
    directory.mkdir(parents=True, exist_ok=True)
    for log in [*stack.directory.glob("worker-*.log"), *stack.directory.glob("*.log")]:
        shutil.copy(log, directory / log.name)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - e.g. the JSON path is not writable: one line
        print(f"soak: {_one_line(exc)}", file=sys.stderr)
        sys.exit(2)
