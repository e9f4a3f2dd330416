"""The OpenAPI document: in step with the models, every route described, references resolve."""

from __future__ import annotations

import json

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
