"""The AsyncAPI 3.0 document: in step with the models, every reference resolves, every topic."""

from __future__ import annotations

import json
from typing import Any

from schemas.export import schema_directory
from streams import topics
from streams.asyncapi import FILE_NAME, asyncapi_document, asyncapi_text


def test_the_shipped_document_is_what_the_models_say() -> None:
    shipped = (schema_directory() / FILE_NAME).read_text(encoding="utf-8")
    assert shipped == asyncapi_text(), "asyncapi.json is stale: run `migrator schemas` and commit"


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [ref for item in value.values() for ref in _refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_reference_resolves_and_every_topic_is_a_channel() -> None:
    document = json.loads(json.dumps(asyncapi_document("1.0.0")))
    assert document["asyncapi"] == "3.0.0"
    for ref in _refs(document):
        assert ref.startswith("#/"), ref
        _resolve(document, ref)
    addresses = {channel["address"] for channel in document["channels"].values()}
    # The public topics, and the run-control topic (named after the app id) operators write.
    assert addresses == {*topics.PUBLIC_TOPICS, "{appId}-control", topics.RUN_EVENTS}
    assert topics.control_topic("app") == "{appId}-control".format(appId="app")
    for kind in ("migratedOutcome", "failedOutcome", "rolledBackOutcome"):
        names = document["components"]["messages"][kind]["headers"]["properties"]
        assert {"migrator-request-id", "migrator-run-id", "migrator-original-offset"} <= set(names)
    actions = {op["action"] for op in document["operations"].values()}
    assert actions == {"send", "receive"}
    failed = document["components"]["messages"]["failedOutcome"]
    assert "migrator-error-code" in failed["headers"]["properties"]


def test_a_cancel_record_is_what_the_document_says_and_reads_back() -> None:
    import jsonschema_rs

    from agents.core import control_state
    from agents.core.control_state import ControlState, cancel_key
    from streams.control_topic import cancel_value

    value = json.loads(
        json.dumps(cancel_value(run_id="wave-2", by="ops", reason=None, before={1: 40, 0: 7}))
    )
    schema = asyncapi_document("1.0.0")["components"]["schemas"]["ControlCancel"]
    validator = jsonschema_rs.validator_for(schema)
    assert validator.is_valid(value), value
    assert not validator.is_valid({**value, "before": {"0": -1}})
    state = control_state.apply(ControlState(), cancel_key("wave-2"), value)
    assert state.cancelled("wave-2", 1, 39) is not None and state.cancelled("wave-2", 1, 40) is None
