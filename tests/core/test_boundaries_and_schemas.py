"""The pure modules import no I/O library and the core nothing of ``streams``; event schemas
match their golden files and exports."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import agents.core
from schemas.events import DeadLetter, MigrationRequest, Outcome
from schemas.export import drift

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).parents[2]
CORE = sorted(f"agents.core.{m.name}" for m in pkgutil.iter_modules(agents.core.__path__))
PURE_ELSEWHERE = [
    "schemas.events",
    "schemas.legacy",
    "schemas.session",
    "streams.codecs",
    "streams.web.inputs",
    "streams.web.metrics",
    "streams.web.totals",
    "streams.cli.replay",
    "streams.cli.status_line",
    "streams.cli.selection",
    "streams.asyncapi",
    "streams.web.api",
    "streams.web.openapi",
]
IO_LIBRARIES = ("faust", "mode", "aiokafka", "asyncpg", "redis", "aiohttp")


def test_the_core_holds_the_modules_the_readme_names() -> None:
    names = {name.rpartition(".")[2] for name in CORE}
    assert {"planner", "decide", "outcomes", "counters", "checks", "documents", "retry"} <= names


def test_pure_modules_import_no_io_library() -> None:
    code = (
        f"import sys, importlib; [importlib.import_module(m) for m in {CORE + PURE_ELSEWHERE!r}]; "
        f"print(sorted(m for m in {IO_LIBRARIES!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"an I/O library is imported: {result.stdout}"


def _imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_nothing_in_the_core_imports_streams_stores_or_jobs() -> None:
    forbidden = (
        "streams",
        "agents.stores",
        "agents.jobs",
        "agents.batch_applier",
        "agents.migration_agent",
    )
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "agents" / "core").glob("*.py")
        for name in _imported(path)
        if name.startswith(forbidden)
    }
    assert not offenders, offenders


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
    for name, model in (
        ("request", MigrationRequest),
        ("outcome_migrated", Outcome),
        ("outcome_failed", Outcome),
        ("dead_letter", DeadLetter),
    ):
        golden = json.loads((GOLDEN / f"{name}.json").read_text())
        dumped = model.model_validate(golden).model_dump(mode="json")
        missing = _keys(golden) - _keys(dumped)
        assert not missing, f"{name}: fields dropped by the model: {missing}"
