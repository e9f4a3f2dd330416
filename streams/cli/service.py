"""``migrator worker`` and ``migrator schemas``: run the stream processor, export its schemas."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from streams.settings import Settings


def _worker(args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    settings = Settings.from_env()
    return run_worker(settings, loglevel=args.loglevel or settings.log_level)


def _schemas(args: argparse.Namespace) -> int:
    from schemas.export import export_json_schemas, schema_directory
    from streams.asyncapi import FILE_NAME, asyncapi_text

    directory = Path(args.dir) if args.dir else schema_directory()
    for path in export_json_schemas(directory):
        print(f"wrote {path}")
    from streams.web import openapi

    for name, text in ((FILE_NAME, asyncapi_text()), (openapi.FILE_NAME, openapi.openapi_text())):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


def register(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="run the stream processor (Faust worker)",
        description="Check PostgreSQL, Redis and Kafka, create the topics, then consume "
        "requests until stopped. Settings come from the environment (see the README).",
        epilog="example:\n  MIGRATOR_WEB_PORT=6067 migrator worker -l warning",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument(
        "-l",
        "--loglevel",
        choices=("debug", "info", "warning", "error"),
        help="log level (default: MIGRATOR_LOG_LEVEL, else info)",
    )
    worker.set_defaults(handler=_worker)

    schemas = commands.add_parser(
        "schemas",
        help="write the events' JSON Schema files and the topics' AsyncAPI document",
        description="Export the JSON Schemas of the request, outcome and dead-letter events, "
        "the AsyncAPI 3.0 document of the topics (asyncapi.json) and the OpenAPI 3.1 document of "
        "the HTTP API (openapi.json).",
        epilog="example:\n  migrator schemas --dir /tmp/schemas",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    schemas.add_argument("--dir", help="directory (default: schemas/json in the package)")
    schemas.set_defaults(handler=_schemas)
