"""``migrator stats``: the live counters of a running worker, or a status line every few seconds.

``--watch`` prints one line per interval (done/total, %, rate, backlog, failures, ETA, elapsed)
until interrupted; ``--until-done`` stops once every published request is answered (nothing
waits in the request topic), or, after three polls, once the cluster is paused (nothing moves
until a resume: one line naming the pause, exit 2). While a server the worker needs is down, the
watch keeps watching and says which one and since when (the worker answers 503, or its backlog
is unknown); a worker that stops answering at all ends the watch with one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

from streams.cli.errors import CliError
from streams.cli.status_line import down_servers, finished, outage_line, stalled, status_line
from streams.settings import Settings

API = "/api/v1/onboarding/migration"
# --until-done gives up on a paused cluster after this many polls in a row (not on a pause that
# a resume lifts at once).
_PAUSED_POLLS = 3
# The shortest interval between two polls (each asks the worker for progress: a few queries).
MIN_INTERVAL_S = 0.5
EXAMPLES = """examples:
  migrator stats                                   the counters as JSON
  migrator stats --watch                           a status line every 2 s
  migrator stats --watch --interval 10 --until-done
  migrator stats --url http://worker-2:6066
"""


class WorkerUnavailable(CliError):
    """The worker answered 503: a server it needs is down (it says which in ``health``)."""


def fetch(url: str, path: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{url}{API}/{path}", timeout=10) as answer:
            value: dict[str, Any] = json.load(answer)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:200]
        error = WorkerUnavailable if exc.code == 503 else CliError
        raise error(f"the worker at {url} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(
            f"no worker answers at {url} ({exc}); start one with `migrator worker`"
        ) from None
    return value


def _stats(args: argparse.Namespace) -> int:
    url = args.url or f"http://127.0.0.1:{Settings.from_env().web_port}"
    if not url.startswith(("http://", "https://")):
        raise CliError(f"--url {url}: a worker answers over http:// or https://")
    if not args.watch:
        print(json.dumps(fetch(url, "stats"), indent=2))
        return 0
    started = time.monotonic()
    paused_polls = 0
    while True:
        clock = datetime.now().strftime("%H:%M:%S")
        try:
            progress = fetch(url, "progress")
        except WorkerUnavailable as exc:
            print(outage_line(_health(url), clock=clock, fallback=str(exc)), flush=True)
            time.sleep(args.interval)
            continue
        except CliError as exc:
            raise CliError(f"the watch stopped: {exc}") from None
        line = status_line(progress, elapsed_s=time.monotonic() - started, clock=clock)
        if progress.get("backlog") is None:  # Kafka did not answer the worker
            line += "; " + down_servers(_health(url))
        print(line, flush=True)
        if args.until_done and finished(progress):
            return 0
        why = stalled(progress)
        paused_polls = paused_polls + 1 if why else 0
        if args.until_done and why and paused_polls >= _PAUSED_POLLS:
            raise CliError(f"the watch stopped: {why}")
        time.sleep(args.interval)


def _health(url: str) -> dict[str, Any]:
    """``GET health`` whatever its status (503 names what is down); {} if it does not answer."""
    try:
        with urllib.request.urlopen(f"{url}{API}/health", timeout=10) as answer:
            value: dict[str, Any] = json.load(answer)
            return value
    except urllib.error.HTTPError as exc:
        try:
            found: dict[str, Any] = json.loads(exc.read())
            return found
        except ValueError:
            return {}
    except (urllib.error.URLError, OSError, ValueError):
        return {}


def _interval(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds >= MIN_INTERVAL_S:
        raise argparse.ArgumentTypeError(
            f"{value!r}: the interval is at least {MIN_INTERVAL_S:g} s"
        )
    return seconds


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "stats",
        help="the live counters of a running worker, or a status line (--watch)",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url", help="worker base URL (default: http://127.0.0.1:$MIGRATOR_WEB_PORT)"
    )
    parser.add_argument("--watch", action="store_true", help="a status line every interval")
    parser.add_argument(
        "--interval", type=_interval, default=2.0, metavar="S", help="seconds between lines (2)"
    )
    parser.add_argument(
        "--until-done",
        action="store_true",
        help="with --watch: stop once every published request is answered",
    )
    parser.set_defaults(handler=_stats)
