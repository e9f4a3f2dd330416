"""``make soak``: many worker SIGKILLs, interleaved with every other fault, during a long flood.

The CI test (tests/e2e/test_faults.py) injects each fault kind once; a bug that needs the tenth
restart, or a restart right after a broker came back, only shows over many. This runs the same
machinery (``faults.run_faults``) with ``SOAK_KILLS`` worker SIGKILLs (default 25) and the other
fault kinds spread between them, on ``SOAK_USERS`` users (default 20,000), on a stack of its own
that it starts and stops. It prints the recovery table, worker self-exits and check results,
and writes them as JSON under .stack/soak/ (or ``--json PATH``) with the workers' logs beside it.

Exit status: 0 when every check passed and no worker exited by itself, 1 when the run found
problems, 2 when the run itself could not go on. Errors are one line, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from faults import (  # noqa: E402 - the fault machinery lives with the e2e tests
    FaultRunError,
    RunConfig,
    RunReport,
    describe_failures,
    run_faults,
    soak_schedule,
)
from harness import Stack, start_stack, stop_stack  # noqa: E402

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
    if args.kills < 0 or args.users < 1 or args.workers < 2:
        parser.error("need --kills >= 0, --users >= 1 and --workers >= 2")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path: Path = args.json or ROOT / ".stack" / "soak" / f"soak-{stamp}.json"
    config = RunConfig(
        users=args.users,
        faults=soak_schedule(args.kills),
        workers=args.workers,
        recovery_timeout_s=args.recovery_timeout,
    )
    print(
        f"soak: {args.users} users, {len(config.faults)} faults ({args.kills} worker kills), "
        f"{args.workers} workers; starting a stack",
        flush=True,
    )
    try:
        stack = start_stack()
    except pytest.fail.Exception as exc:
        print(f"soak: {str(exc).strip().splitlines()[-1]}", file=sys.stderr)
        return 2
    report: RunReport | None = None
    try:
        report = asyncio.run(run_faults(config, stack, log=_print))
    except KeyboardInterrupt:
        print("soak: interrupted; stopping the stack", file=sys.stderr)
        return 130
    except FaultRunError as exc:
        print(f"soak: the run could not go on: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback; worker logs are kept
        print(f"soak: the run failed: {_one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        _keep_logs(stack, json_path.with_suffix(""))
        stop_stack(stack)
    print(report.render(examples=8))
    report.write_json(json_path)
    print(f"\nfigures: {json_path}\nworker logs: {json_path.with_suffix('')}/")
    failures = describe_failures(report, max_recovery_s=MAX_RECOVERY_S)
    for failure in failures:
        print(f"soak: {failure}", file=sys.stderr)
    return 1 if failures else 0


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
