"""``migrator stats``: the live counters, asked of a running worker over HTTP."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from streams.settings import Settings

STATS_PATH = "/api/v1/onboarding/migration/stats"


def _stats(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    url = args.url or f"http://127.0.0.1:{settings.web_port}"
    try:
        with urllib.request.urlopen(f"{url}{STATS_PATH}", timeout=10) as answer:
            stats = json.load(answer)
    except (urllib.error.URLError, OSError) as exc:
        hint = "start one with `migrator worker`"
        print(f"migrator: no worker answers at {url} ({exc}); {hint}", file=sys.stderr)
        return 2
    print(json.dumps(stats, indent=2))
    return 0


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "stats",
        help="the live counters, from a running worker",
        description="The cluster's counters as one worker answers them (JSON).",
        epilog="examples:\n  migrator stats\n  migrator stats --url http://worker-2:6066",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url", help="worker base URL (default: http://127.0.0.1:$MIGRATOR_WEB_PORT)"
    )
    parser.set_defaults(handler=_stats)
