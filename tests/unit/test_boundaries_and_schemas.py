"""The pure core imports no I/O library; event schemas match their golden files and exports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from schemas.events import DeadLetter, MigrationRequest, Outcome
from schemas.export import drift

GOLDEN = Path(__file__).parent / "golden"


def test_planner_and_schemas_import_no_io_library() -> None:
    code = (
        "import sys, agents.planner, agents.decide, agents.outcomes, agents.counters, "
        "schemas.events, schemas.legacy; "
        "print(sorted(m for m in ('faust', 'asyncpg', 'redis', 'aiokafka', 'mode') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)  # fmt: skip
    assert result.stdout.strip() == "[]"


def test_exported_json_schemas_match_the_models() -> None:
    assert drift() == [], "schemas/json is stale: run `migrator schemas` and commit the files"


def _keys(value: object, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        found = set()
        for key, item in value.items():
            found |= {f"{prefix}{key}"} | _keys(item, f"{prefix}{key}.")
        return found
    return set()


def test_golden_events_parse_and_keep_every_field() -> None:
    for name, model in (("request", MigrationRequest), ("outcome_migrated", Outcome),
                        ("outcome_failed", Outcome), ("dead_letter", DeadLetter)):  # fmt: skip
        golden = json.loads((GOLDEN / f"{name}.json").read_text())
        dumped = model.model_validate(golden).model_dump(mode="json")
        missing = _keys(golden) - _keys(dumped)
        assert not missing, f"{name}: fields dropped by the model: {missing}"
