"""The OpenAPI 3.1 document of the worker's HTTP API, generated from the models in ``api.py``.

Served at ``/openapi.json`` and written by ``migrator schemas`` (``schemas/json/openapi.json``);
a test fails when the shipped file drifts from the models. Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from streams.web import api

PREFIX = "/api/v1/onboarding/migration"
FILE_NAME = "openapi.json"
_REF = "#/components/schemas/{model}"

_MODELS: list[type[BaseModel]] = [
    api.OptionsBody,
    api.BulkBody,
    api.ErrorAnswer,
    api.Accepted,
    api.Stats,
    api.LocalStats,
    api.Progress,
    api.Health,
    api.Validation,
    api.Workers,
    api.Failures,
    api.PauseBody,
    api.ThrottleBody,
    api.Control,
    api.Revalidation,
    api.Audit,
    api.Run,
    api.Runs,
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel] | dict[str, Any], text: str) -> dict[str, Any]:
    schema = _ref(model) if isinstance(model, type) else model
    return {"description": text, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "invalid input (the message says which field and why)",
        401: "missing or wrong bearer token (WWW-Authenticate: Bearer)",
        403: "admin endpoints disabled: MIGRATOR_ADMIN_TOKEN is not set",
        404: "unknown user or run",
        413: "body over 1 MiB, or more than 10,000 user_ids",
        503: "PostgreSQL (or, for control, Kafka) did not answer",
    }
    return {str(code): _json(api.ErrorAnswer, texts[code]) for code in codes}


_USER = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": api.USER_ID_PATTERN},
}


def _admin(action: str, bulk: bool) -> dict[str, Any]:
    body = api.BulkBody if bulk else api.OptionsBody
    return {
        "post": {
            "summary": f"publish {action} requests" + ("" if bulk else " for one user"),
            "operationId": f"{action}{'Many' if bulk else 'One'}",
            "security": [{"bearer": []}],
            **({} if bulk else {"parameters": [_USER]}),
            "requestBody": {
                "required": bulk,
                "content": {"application/json": {"schema": _ref(body)}},
            },
            "responses": {
                "202": _json(api.Accepted, "published; the request ids"),
                **_errors(400, 401, 403, 413),
            },
        }
    }


_RUN = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": api.RUN_ID_PATTERN},
}


def _control(verb: str, body: type[BaseModel], summary: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "operationId": f"control{verb.capitalize()}",
            "security": [{"bearer": []}],
            "requestBody": {
                "required": verb == "throttle",
                "content": {"application/json": {"schema": _ref(body)}},
            },
            "responses": {
                "202": _json(api.Control, "written to the control topic; the state it makes"),
                **_errors(400, 401, 403, 413, 503),
            },
        }
    }


def _get(operation: str, summary: str, responses: dict[str, Any], **extra: Any) -> Any:
    return {"get": {"operationId": operation, "summary": summary, "responses": responses, **extra}}


def openapi_document(version: str) -> dict[str, Any]:
    _, top = models_json_schema([(m, "serialization") for m in _MODELS], ref_template=_REF)
    stats_answer = {"oneOf": [_ref(api.Stats), _ref(api.LocalStats)]}
    text = {"text/plain": {"schema": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "onboarding-migrator worker",
            "version": version,
            "description": "Live counters, progress, health and validation of the migration, and "
            "the admin endpoints that publish requests. See docs/contract.md §9.",
        },
        "paths": {
            f"{PREFIX}/stats": _get(
                "stats",
                "the cluster's counters (the same from every worker); ?scope=local: this "
                "worker's partitions",
                {"200": _json(stats_answer, "counters"), **_errors(503)},
                parameters=[
                    {
                        "name": "scope",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["local"]},
                    }
                ],
            ),
            f"{PREFIX}/progress": _get(
                "progress",
                "how much of the legacy population is done, the rate, the ETA and the backlog",
                {"200": _json(api.Progress, "progress"), **_errors(503)},
            ),
            f"{PREFIX}/health": _get(
                "health",
                "PostgreSQL, Redis, Kafka and processing; 503 when one is down",
                {"200": _json(api.Health, "healthy"), "503": _json(api.Health, "not healthy")},
            ),
            f"{PREFIX}/validate/{{user_id}}": _get(
                "validate",
                "one user's state (migrated, rolled back, never migrated) and its checks",
                {"200": _json(api.Validation, "the report"), **_errors(400, 404)},
                parameters=[_USER],
            ),
            f"{PREFIX}/workers": _get(
                "workers",
                "every worker that reported lately: owned partitions, their lag, memory",
                {"200": _json(api.Workers, "workers"), **_errors(503)},
            ),
            f"{PREFIX}/failures": _get(
                "failures",
                "failed users by error code: retryable or not, a sample of user ids",
                {"200": _json(api.Failures, "failures"), **_errors(503)},
            ),
            f"{PREFIX}/runs": _get(
                "runs",
                "the latest runs (staged rollouts) with their figures",
                {"200": _json(api.Runs, "runs"), **_errors(503)},
            ),
            f"{PREFIX}/runs/{{run_id}}": _get(
                "run",
                "one run: requested, done, failed by code, rolled back, rate, ETA",
                {"200": _json(api.Run, "the run"), **_errors(400, 404, 503)},
                parameters=[_RUN],
            ),
            f"{PREFIX}/runs/{{run_id}}/report": _get(
                "runReport",
                "the run's failed users with their codes, as CSV (default) or JSON",
                {
                    "200": {
                        "description": "the report",
                        "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            "application/json": {"schema": {"type": "array"}},
                        },
                    },
                    **_errors(400, 404, 503),
                },
                parameters=[
                    _RUN,
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["csv", "json"]},
                    },
                ],
            ),
            f"{PREFIX}/control": _get(
                "control",
                "paused or running (why, by whom), the throttle, this worker's share",
                {"200": _json(api.Control, "the control state")},
            ),
            f"{PREFIX}/control/pause": _control(
                "pause", api.PauseBody, "pause every worker (the batch in hand finishes)"
            ),
            f"{PREFIX}/control/resume": _control(
                "resume", api.PauseBody, "every worker takes requests again"
            ),
            f"{PREFIX}/control/throttle": _control(
                "throttle", api.ThrottleBody, "cap the cluster's users/s, or lift the cap"
            ),
            f"{PREFIX}/revalidation": _get(
                "revalidation",
                "the background re-validation: mismatches by check, drift, latest user ids",
                {"200": _json(api.Revalidation, "findings"), **_errors(503)},
            ),
            f"{PREFIX}/audit": _get(
                "audit",
                "the answer audit: request records without exactly one answer, per partition",
                {"200": _json(api.Audit, "open findings and audit positions"), **_errors(503)},
            ),
            f"{PREFIX}/migrate": _admin("migrate", bulk=True),
            f"{PREFIX}/migrate/{{user_id}}": _admin("migrate", bulk=False),
            f"{PREFIX}/rollback": _admin("rollback", bulk=True),
            f"{PREFIX}/rollback/{{user_id}}": _admin("rollback", bulk=False),
            "/dashboard": _get(
                "dashboard",
                "the live dashboard (self-contained HTML)",
                {
                    "200": {
                        "description": "page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            ),
            "/metrics": _get(
                "metrics",
                "Prometheus text format 0.0.4 (see the README for the metric names)",
                {
                    "200": {"description": "metrics", "content": text},
                    "503": {"description": "PostgreSQL did not answer", "content": text},
                },
            ),
            "/openapi.json": _get(
                "openapi",
                "this document",
                {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
            ),
        },
        "components": {
            "schemas": top["$defs"],
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "MIGRATOR_ADMIN_TOKEN",
                }
            },
        },
    }


def openapi_text(version: str | None = None) -> str:
    from streams.asyncapi import package_version

    document = openapi_document(version or package_version())
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
