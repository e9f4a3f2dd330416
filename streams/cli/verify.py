"""``migrator verify``: the whole population, a run or given users, checked end to end.

Migrated users: the legacy snapshot → the session, its 24 steps, its manifest and checksum in
PostgreSQL → the Redis mirror. Rolled-back users: the legacy row as the rollback restored it.
Others: the legacy row alone. Prints the throughput; ``--json FILE`` writes the report
(mismatches by check and by user). Exit 0 when everything holds, 1 on a mismatch, 2 when it
cannot run. ``--resume`` goes on with the latest verification that did not finish.

``--repair`` plans the repair of what was found (``--execute`` does it): Redis rewritten from
PostgreSQL; a session, steps or manifest rebuilt from the snapshot under the user's row lock,
with an audit entry; drift reported for an operator, never repaired. With ``--execute`` the exit
code is 0 when everything found was repaired. ``--rerun REPORT`` checks exactly the users of an
earlier report, to prove a repair.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.cli.errors import CliError
from streams.cli.requests import run_name
from streams.cli.selection import add_id_options, read_ids
from streams.settings import Settings

EXAMPLES = """examples:
  migrator verify                                  everyone; prints users/s; exit 1 on a mismatch
  migrator verify --run canary --json canary.json  a run's users, with a report
  migrator verify --ids user-0000042,user-0000043
  migrator verify --resume                         go on after a stop or a crash
  migrator verify --repair                         verify, then plan the repair (changes nothing)
  migrator verify --rerun canary.json --repair --execute   repair what a report found
  migrator verify --rerun canary.json              prove it: the same users, checked again
"""


def _report_users(path: str) -> list[str]:
    try:
        report = json.loads(Path(path).read_text("utf-8"))
        users = [entry["user_id"] for entry in report["users"]]
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except (ValueError, KeyError, TypeError):
        raise CliError(f"{path}: not a report of `migrator verify --json`") from None
    if not all(isinstance(user, str) for user in users):
        raise CliError(f"{path}: not a report of `migrator verify --json`")
    return users


def _scope(args: argparse.Namespace) -> Any:
    from agents.jobs.verify import Scope

    given = [bool(args.run), bool(args.ids or args.file), bool(args.rerun), bool(args.resume)]
    if sum(given) > 1:
        raise CliError("give one of --run, --ids/--file, --rerun, --resume")
    if args.run:
        return Scope("run", run_id=args.run)
    if args.rerun:
        return Scope("ids", ids=tuple(_report_users(args.rerun)))
    ids = read_ids(args)
    if ids is not None:
        return Scope("ids", ids=tuple(ids))
    return Scope("population")


async def _record_verified(pool: Any, app_id: str, job: Any) -> None:
    """A run's verification is a run event (``verified``, on ``user-migration-runs`` and the
    ``on-run-verified`` hook): recorded in the outbox, published by the worker that publishes
    run events. Recording it twice (a re-run of the same verification) records it once."""
    from agents.stores.run_events import record_verified
    from streams.cli.control import operator_name

    await record_verified(
        pool,
        app_id,
        run_id=job.scope.run_id,
        verification_id=str(job.verify_id),
        at=datetime.now(UTC),
        by=f"migrator verify ({operator_name()})",
        report={
            "checked": job.tally.checked,
            "mismatched": job.tally.mismatched,
            "by_check": dict(sorted((job.tally.by_check or {}).items())),
            "ok": job.ok,
            "elapsed_s": round(job.elapsed_s, 3),
        },
    )


def _verify(args: argparse.Namespace) -> int:
    from agents.core.verify_rules import by_kind, by_user
    from agents.jobs import verify, verify_repair
    from streams.cli.output import Progress
    from streams.connections import opened

    if args.execute and not args.repair:
        raise CliError("--execute repairs: give it with --repair")
    if args.chunk < 1:
        raise CliError("--chunk must be at least 1")
    scope = _scope(args)
    out = Path(args.json) if args.json else None
    if out is not None and out.parent and not out.parent.is_dir():
        raise CliError(f"{args.json}: no such directory {str(out.parent)!r}")

    settings = Settings.from_env()

    async def run() -> int:
        async with opened(settings) as (pool, redis):
            await redis.ping()  # a Redis that is down is said before any work
            if scope.kind == "run" and not await _run_known(pool, scope.run_id):
                raise CliError(f"no run named {scope.run_id!r}: see `migrator runs`")
            if args.resume:
                job = await verify.resume(pool)
                if job is None:
                    raise CliError("nothing to resume: every verification finished")
                print(
                    f"verify: resuming verification {job.verify_id} ({job.scope.describe()}) "
                    f"after {job.resumed_from or 'the start'}, {job.tally.checked} checked"
                )
            else:
                job = await verify.start(pool, scope)
            total = await verify.total_of(pool, job.scope)
            print(f"verify {job.verify_id}: {total} user(s) of {job.scope.describe()}")
            progress = Progress(total, "verify", start=job.tally.checked)
            await verify.run(pool, redis, job, chunk=args.chunk, progress=progress.update)
            progress.update(job.tally.checked, force=True)
            _summary(job)
            if job.scope.kind == "run" and job.scope.run_id is not None:
                await _record_verified(pool, settings.app_id, job)
            report: dict[str, Any] = {
                "verify_id": job.verify_id,
                "scope": job.scope.as_dict(),
                "started_at": job.started_at.isoformat(),
                "checked": job.tally.checked,
                "mismatched_users": job.tally.mismatched,
                "ok": job.ok,
                "elapsed_s": round(job.elapsed_s, 3),
                "users_per_s": round(job.rate, 1),
                "by_check": dict(sorted((job.tally.by_check or {}).items())),
                "by_kind": by_kind(job.findings),
                "users": by_user(job.findings),
            }
            code = 0 if job.ok else 1
            if args.repair and job.findings:
                plan = verify_repair.plan_repair(job.findings)
                _print_plan(plan)
                report["repair_plan"] = {
                    "rebuild": plan.rebuild,
                    "rewrite_redis": plan.rewrite,
                    "drift": plan.drift,
                    "unrepairable": plan.unrepairable,
                }
                if args.execute:
                    done = await verify_repair.execute(pool, redis, plan, verify_id=job.verify_id)
                    report["repair"] = {
                        "rebuilt": done.rebuilt,
                        "rewritten_redis": done.rewritten,
                        "already_right": done.already_right,
                        "refused": done.refused,
                    }
                    not_rewritten = set(plan.rewrite) - set(done.rewritten)
                    left = set(plan.drift) | set(plan.unrepairable) | set(done.refused)
                    left |= not_rewritten  # Redis refused (said by --rerun)
                    print(
                        f"repaired: {len(done.rebuilt)} rebuilt from the snapshot, "
                        f"{len(done.rewritten)} mirror(s) rewritten; "
                        f"{len(done.already_right)} already right under the lock; "
                        f"{len(left)} left for an operator"
                    )
                    if args.json:
                        print(f"prove it: migrator verify --rerun {args.json}")
                    code = 1 if left else 0
                else:
                    print("nothing was changed: add --execute to repair")
            if out is not None:
                try:
                    out.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
                except OSError as exc:
                    raise CliError(f"{args.json}: {exc.strerror}") from None
                print(f"report written to {args.json}")
            return code

    from agents.stores.errors import describe
    from agents.stores.postgres import FAILED

    try:
        return asyncio.run(run())
    except FAILED as exc:  # PostgreSQL went away or refused mid-way: the chunks saved stay
        raise CliError(
            f"PostgreSQL failed ({describe(exc).splitlines()[0]}); what was checked is saved: "
            "migrator verify --resume"
        ) from None


async def _run_known(pool: Any, run_id: str | None) -> bool:
    from agents.stores.runs import run_known

    return run_id is not None and await run_known(pool, run_id)


def _summary(job: Any) -> None:
    from agents.core.verify_rules import by_kind

    print(
        f"verified {job.checked_now} user(s) in {job.seconds_now:.1f}s: "
        f"{job.rate:,.0f} users/s"
        + (f" (verification total {job.tally.checked})" if job.resumed_from is not None else "")
    )
    if job.ok:
        print("OK: every check holds")
        return
    print(f"MISMATCHES: {job.tally.mismatched} user(s)")
    for check, count in sorted((job.tally.by_check or {}).items()):
        print(f"  {check:<40} {count}")
    kinds = by_kind(job.findings)
    print("  by kind: " + ", ".join(f"{kind} {count}" for kind, count in kinds.items() if count))
    for entry in _sample(job.findings):
        print(f"    {entry}")


def _sample(findings: Any, limit: int = 5) -> list[str]:
    return [f"{f.user_id}: {f.check} ({f.kind}) {f.detail}" for f in findings[:limit]]


def _print_plan(plan: Any) -> None:
    print("repair plan:")
    print(f"  {len(plan.rebuild):>8} session(s) rebuilt from the legacy snapshot (audited)")
    print(f"  {len(plan.rewrite):>8} mirror(s) rewritten from PostgreSQL")
    print(f"  {len(plan.drift):>8} with drift: reported, not repaired (an operator decides)")
    print(f"  {len(plan.unrepairable):>8} unrepairable: reported (snapshot wrong or gone)")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "verify",
        help="check every user (or a run, or ids) end to end; --repair to put it right",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", type=run_name, metavar="NAME", help="the users of this run")
    add_id_options(parser, what="only these users")
    parser.add_argument("--rerun", metavar="REPORT", help="exactly the users of this report")
    parser.add_argument(
        "--resume", action="store_true", help="go on with the latest unfinished verification"
    )
    parser.add_argument("--json", metavar="FILE", help="write the report (JSON) here")
    parser.add_argument("--repair", action="store_true", help="plan the repair of what is found")
    parser.add_argument("--execute", action="store_true", help="with --repair: do it")
    parser.add_argument(
        "--chunk", type=int, default=5_000, metavar="N", help="users per chunk (5000)"
    )
    parser.set_defaults(handler=_verify)
