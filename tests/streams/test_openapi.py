"""The OpenAPI document: in step with the models, every route described, references resolve."""

from __future__ import annotations

import json
from typing import Any

from test_asyncapi import _refs, _resolve

from schemas.export import schema_directory
from streams.web.openapi import FILE_NAME, openapi_document, openapi_text
from streams.web.views import ROUTES


def test_the_shipped_document_is_what_the_models_say() -> None:
    shipped = (schema_directory() / FILE_NAME).read_text(encoding="utf-8")
    assert shipped == openapi_text(), "openapi.json is stale: run `migrator schemas` and commit"


def test_every_route_is_described_and_every_reference_resolves() -> None:
    document = json.loads(json.dumps(openapi_document("1.0.0")))
    assert set(document["paths"]) == {path for path, _ in ROUTES}
    for ref in _refs(document):
        _resolve(document, ref)


def test_the_bulk_body_schema_asks_for_ids_or_all_as_the_handler_does() -> None:
    """Schemathesis found ``{"user_ids": null, "all": false}`` valid by the document while the
    handler answers 400; the document now says "ids or all"."""
    import jsonschema_rs

    document = json.loads(openapi_text())
    root = {"$ref": "#/components/schemas/BulkBody", "components": document["components"]}
    valid = jsonschema_rs.validator_for(root).is_valid
    assert valid({"user_ids": ["user-1"]}) and valid({"all": True, "run": "wave-2"})
    for body in ({"user_ids": None, "all": False}, {}, {"all": False}, {"dry_run": True}):
        assert not valid(body), body


def _names_users(schema: Any, document: dict[str, Any], seen: set[str]) -> bool:
    """Whether a schema, followed through its references, has a property naming users."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            if ref in seen:
                return False
            seen.add(ref)
            return _names_users(_resolve(document, ref), document, seen)
        if any("user_id" in name for name in schema.get("properties", {})):
            return True
        return any(_names_users(value, document, seen) for value in schema.values())
    if isinstance(schema, list):
        return any(_names_users(value, document, seen) for value in schema)
    return False


# Reads of users' data: the read token (or the admin token) or 401/403.
_READS_OF_USERS = {"validate", "runReport"}
# Open answers that include users' ids only for the read (or admin) token.
_IDS_WITH_THE_TOKEN = {"stats", "failures", "revalidation", "audit"}
# Its ``stats`` is the counters alone: the model allows ``revalidation``, the answer never has
# it (tests/e2e/test_http_api.py checks that progress names nobody).
_NAMES_NOBODY = {"progress"}


def test_every_read_that_can_name_users_declares_the_read_token() -> None:
    """The reads of users' data require the read token (or the admin token); the open answers
    that list users accept it (or none); every other GET is open, and names nobody."""
    document = json.loads(openapi_text())
    schemes = document["components"]["securitySchemes"]
    assert schemes["readToken"]["scheme"] == "bearer" and "MIGRATOR_READ_TOKEN" in str(schemes)
    required = [{"readToken": []}, {"bearer": []}]
    for path, item in document["paths"].items():
        operation = item.get("get")
        if operation is None:
            continue
        name = operation["operationId"]
        security = operation.get("security")
        if name in _READS_OF_USERS:
            assert security == required, path
        elif name in _IDS_WITH_THE_TOKEN:
            assert security == [{}, *required], path
        else:
            assert security is None, path
            names_users = _names_users(operation["responses"].get("200", {}), document, set())
            assert "{user_id}" not in path and (not names_users or name in _NAMES_NOBODY), path
        if security:
            assert {"401", "403"} <= set(operation["responses"]), path
