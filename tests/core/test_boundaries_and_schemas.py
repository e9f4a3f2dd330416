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
from schemas.events import DeadLetter, FailedOutcome, MigratedOutcome, MigrationRequest
from schemas.export import drift
from schemas.run_events import RunEvent

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


def _parsed(source: str) -> ast.Module:
    """``ast.parse``, tried again once on CPython 3.11's spurious "AST constructor recursion
    depth mismatch" (python/cpython#106905: its AST recursion counter is per interpreter, and a
    thread another test left running, or an earlier failed conversion, can skew it)."""
    try:
        return ast.parse(source)
    except SystemError:
        return ast.parse(source)


def _imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(_parsed(path.read_text(encoding="utf-8"))):
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
        "agents.batch_transaction",
    )
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "agents" / "core").glob("*.py")
        for name in _imported(path)
        if name.startswith(forbidden)
    }
    assert not offenders, offenders


def test_nothing_in_agents_imports_streams() -> None:
    """Arrows point down: the Faust wiring calls the migration, never the other way."""
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "agents").rglob("*.py")
        for name in _imported(path)
        if name == "streams" or name.startswith("streams.")
    }
    assert not offenders, offenders


CLIENT_LIBRARIES = ("asyncpg", "redis")
# Who may import a client library, and why. Everyone else goes through ``agents.stores`` and
# catches the stores' own errors (``agents.stores.errors``).
CLIENT_IMPORTERS = {
    "agents/stores/": "the adapters: they talk to the servers and translate the clients' errors",
    "streams/connections.py": "creates the pool and the client",
    "streams/stack/": "starts and probes the local stack's servers",
    "streams/cli/errors.py": "turns any client error into a one-line CLI message",
}


def _client_imports(path: Path) -> set[str]:
    return {name for name in _imported(path) if name.split(".", 1)[0] in CLIENT_LIBRARIES}


def test_only_the_stores_and_the_wiring_import_asyncpg_or_redis() -> None:
    offenders = sorted(
        f"{relative}: {sorted(names)}"
        for folder in ("agents", "streams", "schemas")
        for path in (ROOT / folder).rglob("*.py")
        if (names := _client_imports(path))
        and not (relative := path.relative_to(ROOT).as_posix()).startswith(tuple(CLIENT_IMPORTERS))
    )
    assert not offenders, offenders


def test_the_batch_applier_and_its_transaction_import_no_client_library() -> None:
    modules = ["agents.batch_applier", "agents.batch_transaction", "agents.core.effects"]
    code = (
        f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; "
        f"print(sorted(m for m in {CLIENT_LIBRARIES!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"a client library is imported: {result.stdout}"


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
        ("outcome_migrated", MigratedOutcome),
        ("outcome_failed", FailedOutcome),
        ("dead_letter", DeadLetter),
        ("run_event_auto_paused", RunEvent),
        ("run_event_finished", RunEvent),
    ):
        golden = json.loads((GOLDEN / f"{name}.json").read_text())
        dumped = model.model_validate(golden).model_dump(mode="json")
        missing = _keys(golden) - _keys(dumped)
        assert not missing, f"{name}: fields dropped by the model: {missing}"
