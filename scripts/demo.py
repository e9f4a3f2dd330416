"""``make demo``: the whole job on a local stack, with live progress and final figures.

Stack up → schema → seed legacy users → worker (background) → enqueue everyone not migrated →
progress until every request has its outcome → final stats, throughput, the worker's peak memory
and the dashboard's URL. The worker and the stack keep running for the dashboard; ``make
demo-stop`` ends both. Re-running is safe: seeding and enqueueing only add what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# DEMO_DIR moves it (the end-to-end test runs the demo in a directory of its own).
STACK = Path(os.environ.get("DEMO_DIR") or ROOT / ".stack" / "demo")
# Settings that make every `migrator` command in a shell talk to the demo (`set -a; . FILE`).
ENV_FILE = STACK / "env"
MIGRATOR = [sys.executable, "-m", "streams.cli"]
API = "/api/v1/onboarding/migration"


def run(*args: str, env: dict[str, str], capture: bool = False) -> str:
    result = subprocess.run(
        [*MIGRATOR, *args],
        env=env,
        cwd=ROOT,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


def get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(json.load(response))


def worker_pid() -> int | None:
    try:
        pid = int((STACK / "worker.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def start_worker(env: dict[str, str], base: str) -> int:
    pid = worker_pid()
    if pid is None:
        log = (STACK / "worker.log").open("ab")
        process = subprocess.Popen(
            [*MIGRATOR, "worker"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        pid = process.pid
        (STACK / "worker.pid").write_text(f"{pid}\n")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            health = get(f"{base}{API}/health")
        except OSError:
            health = None
        if health is not None:
            answering = health.get("worker", {})
            if answering.get("pid") != pid or answering.get("app_id") != env["MIGRATOR_APP_ID"]:
                sys.exit(
                    f"demo: another worker answers on {base} (pid {answering.get('pid')}, app "
                    f"id {answering.get('app_id')}); stop it, or choose a port with DEMO_PORT"
                )
            if health.get("ok"):
                return pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit(f"demo: the worker exited while starting; see {STACK / 'worker.log'}")
        time.sleep(0.5)
    sys.exit(f"demo: the worker did not become healthy; see {STACK / 'worker.log'}")


def peak_memory_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def demo(users: int, port: int) -> None:
    STACK.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    exports = subprocess.run(
        [*MIGRATOR, "stack", "up", "--dir", str(STACK)],
        cwd=ROOT,
        check=True,
        text=True,
        stdout=subprocess.PIPE,
    ).stdout
    for line in exports.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    env.setdefault("MIGRATOR_APP_ID", "onboarding-migrator-demo")
    env["MIGRATOR_WEB_PORT"] = str(port)
    env.setdefault("MIGRATOR_ADMIN_TOKEN", "demo-token-" + "x" * 16)
    env["MIGRATOR_DATA_DIR"] = str(STACK / "worker-data")
    names = (
        "KAFKA_BROKER_URL",
        "DATABASE_URL",
        "REDIS_URL",
        "MIGRATOR_APP_ID",
        "MIGRATOR_WEB_PORT",
        "MIGRATOR_ADMIN_TOKEN",
    )
    ENV_FILE.write_text("".join(f"{name}={shlex.quote(env[name])}\n" for name in names))
    base = f"http://127.0.0.1:{port}"
    print("== schema")
    run("db", "init", env=env)
    print(f"== seeding {users} legacy users (1% deliberately broken)")
    run("seed-legacy", "--users", str(users), "--with-problems", "0.01", env=env)
    print("== worker")
    pid = start_worker(env, base)
    before = int(get(f"{base}{API}/stats")["requested"])
    print("== enqueue every legacy user not yet migrated, as the run 'demo'")
    published_line = (
        run("enqueue", "--run", "demo", "--execute", env=env, capture=True).strip().splitlines()[-1]
    )
    print(published_line)
    # "published N request(s) …", or "nothing to publish" when everyone is done already (a
    # second demo: the users failing for good are held out, the others are migrated).
    published = int(published_line.split()[1]) if published_line.startswith("published") else 0
    print("== progress (the status line of `migrator stats --watch`)")
    watch = subprocess.run(
        [*MIGRATOR, "stats", "--watch", "--until-done", "--interval", "1", "--url", base],
        cwd=ROOT,
        env=env,
        check=False,
    )
    if watch.returncode != 0:
        # The watch said why in one line (the cluster paused, or the worker gone).
        sys.exit(f"demo: stopped before the end (the line above); the worker's log: {STACK}")
    done = int(get(f"{base}{API}/stats")["requested"]) - before
    print(f"== done: {done} of {published} requests answered")
    print(f"worker peak memory (VmHWM): {peak_memory_mib(pid):.0f} MiB")
    if published:
        # The run's duration and average rate (first answer to last): the one figure for it.
        print("== the run")
        run("runs", "show", "demo", env=env)
    print(f"dashboard: {base}/dashboard   (stop everything with: make demo-stop)")
    print(
        f"  its user ids need a token: MIGRATOR_ADMIN_TOKEN of {ENV_FILE}, in its Read token field"
    )
    print(f"to talk to the demo from your shell:  set -a; . {ENV_FILE}; set +a")
    print("  then e.g.: .venv/bin/migrator stats --watch   or: .venv/bin/migrator control pause")


def stop() -> None:
    pid = worker_pid()
    if pid is not None:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        print(f"stopped: worker (pid {pid})")
    (STACK / "worker.pid").unlink(missing_ok=True)
    subprocess.run([*MIGRATOR, "stack", "down", "--dir", str(STACK)], cwd=ROOT, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=int(os.environ.get("DEMO_USERS", "50000")))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "6066")))
    parser.add_argument("--stop", action="store_true")
    arguments = parser.parse_args()
    try:
        stop() if arguments.stop else demo(arguments.users, arguments.port)
    except subprocess.CalledProcessError as exc:
        # The command said why on stderr, in one line: no traceback on top of it.
        step = " ".join(str(a) for a in exc.cmd[3:5])
        sys.exit(f"demo: `migrator {step}` failed (the line above); stop with: make demo-stop")


if __name__ == "__main__":
    main()
