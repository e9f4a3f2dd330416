"""JSON Schema files of the events, for the teams that produce requests and consume outcomes.

The files under ``schemas/json`` are generated from the models (``migrator schemas``); a test
fails when they drift, so the published schemas always say what the service really accepts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.events import OUTCOME, DeadLetter, MigrationRequest
from schemas.run_events import RunEvent

_MODELS: dict[str, TypeAdapter[Any]] = {
    "request": TypeAdapter(MigrationRequest),
    "outcome": OUTCOME,
    "dead-letter": TypeAdapter(DeadLetter),
    "run-event": TypeAdapter(RunEvent),
}


def schema_directory() -> Path:
    return Path(__file__).parent / "json"


def json_schemas() -> dict[str, str]:
    """File name → file text, exactly as written."""
    return {
        f"{name}.schema.json": json.dumps(
            model.json_schema(mode="serialization" if name != "request" else "validation"),
            indent=2,
            sort_keys=True,
            ensure_ascii=False,
        )
        + "\n"
        for name, model in _MODELS.items()
    }


def export_json_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in json_schemas().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def drift(directory: Path | None = None) -> list[str]:
    """Names of the files on disk that differ from the models (empty when all is in step)."""
    folder = directory or schema_directory()
    return [
        name
        for name, text in json_schemas().items()
        if not (folder / name).exists() or (folder / name).read_text(encoding="utf-8") != text
    ]
