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
