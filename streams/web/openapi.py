"""The OpenAPI 3.1 document of the worker's HTTP API, generated from the models in ``api.py``.

Served at ``/openapi.json`` and written by ``migrator schemas`` (``schemas/json/openapi.json``);
a test fails when the shipped file drifts from the models. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from schemas.identifiers import RUN_ID_PATTERN, USER_ID_PATTERN
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
    api.TableSize,
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
    api.History,
    api.Audit,
    api.Run,
    api.Runs,
    api.CancelBody,
    api.RunCancelled,
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel] | dict[str, Any], text: str) -> dict[str, Any]:
    schema = _ref(model) if isinstance(model, type) else model
    return {"description": text, "content": {"application/json": {"schema": schema}}}


# Reads of users' data: the read token or the admin token (either scheme satisfies them).
_Security = tuple[dict[str, list[str]], ...]
_READ: _Security = ({"readToken": []}, {"bearer": []})
# Open answers that name users only for a right token: no token is fine too (``{}``).
_READ_OPTIONAL: _Security = ({}, *_READ)

_READ_REFUSALS = {
    401: "bearer token missing, or neither the read nor the admin token (WWW-Authenticate: Bearer)",
    403: "users' data not served: neither MIGRATOR_READ_TOKEN nor MIGRATOR_ADMIN_TOKEN is set",
}


def _read_errors(*codes: int) -> dict[str, Any]:
    """``_errors`` of a read of users' data: its 401 and 403 name the read token."""
    return {
        **_errors(*codes),
        **{str(code): _json(api.ErrorAnswer, text) for code, text in _READ_REFUSALS.items()},
    }


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "invalid input (the message says which field and why)",
        401: "missing or wrong bearer token (WWW-Authenticate: Bearer)",
        403: "admin endpoints disabled: MIGRATOR_ADMIN_TOKEN is not set",
        404: "unknown user or run",
        409: "nothing left to do (a run whose requests are all answered)",
        413: "body over 1 MiB, or more than 10,000 user_ids",
        503: "PostgreSQL (or, for control, Kafka) did not answer",
    }
    return {str(code): _json(api.ErrorAnswer, texts[code]) for code in codes}


def _text(media_type: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def _path(name: str, pattern: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": pattern},
    }


def _choice(name: str, *values: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": list(values)},
    }


_USER = _path("user_id", USER_ID_PATTERN)
# W3C trace context of the call: each published request continues it; absent or invalid (never
# refused), each request starts a trace of its own.
_TRACEPARENT = {
    "name": "traceparent",
    "in": "header",
    "required": False,
    "description": "W3C trace context continued by every request published (optional; an "
    "invalid one is ignored)",
    "schema": {"type": "string"},
}
_RUN = _path("run_id", RUN_ID_PATTERN)


@dataclass(frozen=True)
class _Operation:
    """One row of the table: a GET, or (with ``body``) a POST of the admin API, which takes a
    bearer token and a JSON body of that model."""

    path: str
    operation_id: str
    summary: str
    responses: dict[str, Any]
    parameters: tuple[dict[str, Any], ...] = ()
    body: type[BaseModel] | None = None
    body_required: bool = False
    # A GET's security requirements (``_READ``, ``_READ_OPTIONAL``); none: open.
    security: _Security = ()

    def path_item(self) -> dict[str, Any]:
        parameters = {"parameters": list(self.parameters)} if self.parameters else {}
        if self.body is None:
            security = {"security": list(self.security)} if self.security else {}
            return {
                "get": {
                    "operationId": self.operation_id,
                    "summary": self.summary,
                    "responses": self.responses,
                    **security,
                    **parameters,
                }
            }
        return {
            "post": {
                "summary": self.summary,
                "operationId": self.operation_id,
                "security": [{"bearer": []}],
                **parameters,
                "requestBody": {
                    "required": self.body_required,
                    "content": {"application/json": {"schema": _ref(self.body)}},
                },
                "responses": self.responses,
            }
        }


def _publish(action: str, *, bulk: bool) -> _Operation:
    """``POST migrate|rollback`` (``bulk``: many users, by body) or ``…/{user_id}``."""
    return _Operation(
        f"{PREFIX}/{action}" + ("" if bulk else "/{user_id}"),
        f"{action}{'Many' if bulk else 'One'}",
        f"publish {action} requests" + ("" if bulk else " for one user"),
        {
            "202": _json(api.Accepted, "published; the request ids and their trace ids"),
            **_errors(400, 401, 403, 413, 503),
        },
        parameters=(_TRACEPARENT,) if bulk else (_USER, _TRACEPARENT),
        body=api.BulkBody if bulk else api.OptionsBody,
        body_required=bulk,
    )


def _control(verb: str, body: type[BaseModel], summary: str) -> _Operation:
    """``POST control/pause|resume|throttle``: written to the control topic."""
    return _Operation(
        f"{PREFIX}/control/{verb}",
        f"control{verb.capitalize()}",
        summary,
        {
            "202": _json(api.Control, "written to the control topic; the state it makes"),
            **_errors(400, 401, 403, 413, 503),
        },
        body=body,
        body_required=verb == "throttle",
    )


# Every route of ``views.ROUTES``, in the order the document lists them.
_OPERATIONS: tuple[_Operation, ...] = (
    _Operation(
        f"{PREFIX}/stats",
        "stats",
        "the cluster's counters (the same from every worker); ?scope=local: this "
        "worker's partitions; revalidation's user ids with the read token",
        {
            "200": _json({"oneOf": [_ref(api.Stats), _ref(api.LocalStats)]}, "counters"),
            **_read_errors(400, 503),
        },
        parameters=(_choice("scope", "cluster", "local"),),
        security=_READ_OPTIONAL,
    ),
    _Operation(
        f"{PREFIX}/progress",
        "progress",
        "how much of the legacy population is done, the rate, the ETA and the backlog",
        {"200": _json(api.Progress, "progress"), **_errors(503)},
    ),
    _Operation(
        f"{PREFIX}/health",
        "health",
        "PostgreSQL, Redis, Kafka and processing; 503 when one is down",
        {"200": _json(api.Health, "healthy"), "503": _json(api.Health, "not healthy")},
    ),
    _Operation(
        f"{PREFIX}/validate/{{user_id}}",
        "validate",
        "one user's state (migrated, rolled back, never migrated) and its checks (the "
        "read or admin token)",
        {
            "200": _json(api.Validation, "the report"),
            **_read_errors(400, 404),
            "503": _json(
                api.ErrorAnswer,
                "PostgreSQL did not answer, or a writer held the user's row over 10 s",
            ),
        },
        parameters=(_USER,),
        security=_READ,
    ),
    _Operation(
        f"{PREFIX}/workers",
        "workers",
        "every worker that reported lately: owned partitions, their lag, memory",
        {"200": _json(api.Workers, "workers"), **_errors(503)},
    ),
    _Operation(
        f"{PREFIX}/failures",
        "failures",
        "failed users by error code: retryable or not; a sample of user ids with the read token",
        {"200": _json(api.Failures, "failures"), **_read_errors(503)},
        security=_READ_OPTIONAL,
    ),
    _Operation(
        f"{PREFIX}/runs",
        "runs",
        "the latest runs (staged rollouts) with their figures",
        {"200": _json(api.Runs, "runs"), **_errors(503)},
    ),
    _Operation(
        f"{PREFIX}/runs/{{run_id}}",
        "run",
        "one run: requested, done, failed by code, rolled back, rate, ETA",
        {"200": _json(api.Run, "the run"), **_errors(400, 404, 503)},
        parameters=(_RUN,),
    ),
    _Operation(
        f"{PREFIX}/runs/{{run_id}}/report",
        "runReport",
        "the run's failed users with their codes, as CSV (default) or JSON (the read or "
        "admin token)",
        {
            "200": {
                "description": "the report",
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "array"}},
                },
            },
            **_read_errors(400, 404, 503),
        },
        parameters=(_RUN, _choice("format", "csv", "json")),
        security=_READ,
    ),
    _Operation(
        f"{PREFIX}/runs/{{run_id}}/cancel",
        "runCancel",
        "cancel a run: its requests not answered yet are answered failed/cancelled (retryable), "
        "touching no user; requests of the run published later are processed as usual",
        {
            "202": _json(api.RunCancelled, "written to the control topic; the run as it makes it"),
            **_errors(400, 401, 403, 404, 409, 413, 503),
        },
        parameters=(_RUN,),
        body=api.CancelBody,
    ),
    _Operation(
        f"{PREFIX}/control",
        "control",
        "paused or running (why, by whom), the throttle, this worker's share",
        {"200": _json(api.Control, "the control state")},
    ),
    _control("pause", api.PauseBody, "pause every worker (the batch in hand finishes)"),
    _control("resume", api.PauseBody, "every worker takes requests again"),
    _control("throttle", api.ThrottleBody, "cap the cluster's users/s, or lift the cap"),
    _Operation(
        f"{PREFIX}/history",
        "history",
        "the last hour of outcomes/s and failures/s, and the pauses and throttles seen, as the "
        "answering worker kept them (a dashboard tab opened late still draws its chart)",
        {"200": _json(api.History, "the recent history")},
    ),
    _Operation(
        f"{PREFIX}/revalidation",
        "revalidation",
        "the background re-validation: mismatches by check, drift; the latest user ids "
        "with the read token",
        {"200": _json(api.Revalidation, "findings"), **_read_errors(503)},
        security=_READ_OPTIONAL,
    ),
    _Operation(
        f"{PREFIX}/audit",
        "audit",
        "the answer audit: request records without exactly one answer, per partition; "
        "their user ids with the read token",
        {"200": _json(api.Audit, "open findings and audit positions"), **_read_errors(503)},
        security=_READ_OPTIONAL,
    ),
    _publish("migrate", bulk=True),
    _publish("migrate", bulk=False),
    _publish("rollback", bulk=True),
    _publish("rollback", bulk=False),
    _Operation(
        "/dashboard",
        "dashboard",
        "the live dashboard (self-contained HTML)",
        {"200": _text("text/html", "page")},
    ),
    _Operation(
        "/metrics",
        "metrics",
        "Prometheus text format 0.0.4 (see the README for the metric names)",
        {
            "200": _text("text/plain", "metrics"),
            "503": _text("text/plain", "PostgreSQL did not answer"),
        },
    ),
    _Operation(
        "/openapi.json",
        "openapi",
        "this document",
        {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
    ),
)


def openapi_document(version: str) -> dict[str, Any]:
    _, top = models_json_schema([(m, "serialization") for m in _MODELS], ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "onboarding-migrator worker",
            "version": version,
            "description": "Live counters, progress, health and validation of the migration, and "
            "the admin endpoints that publish requests. Aggregates are open; reads of users' "
            "data (ids, one user's state) take the read token (MIGRATOR_READ_TOKEN) or the "
            "admin token, and the open answers that list users include the ids only with one. "
            "See docs/contract.md §9.",
        },
        "paths": {operation.path: operation.path_item() for operation in _OPERATIONS},
        "components": {
            "schemas": top["$defs"],
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "MIGRATOR_ADMIN_TOKEN: the admin endpoints, and every read",
                },
                "readToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "MIGRATOR_READ_TOKEN: reads of users' data (validate, a "
                    "run's report, the user ids in failures, revalidation, audit and stats)",
                },
            },
        },
    }


def openapi_text(version: str | None = None) -> str:
    from streams.asyncapi import package_version

    document = openapi_document(version or package_version())
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
