"""The AsyncAPI 3.0 document of the service's topics, generated from the event models.

Channels are the contract's topics (§1), messages carry the JSON Schemas of the same pydantic
models the service validates with, and the Kafka bindings name the record key and the failure
headers. ``migrator schemas`` writes it next to the JSON Schemas; a test fails when it drifts.
Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from agents.core.control_state import MAX_RATE, MIN_RATE
from schemas.events import (
    SCHEMA_VERSION,
    DeadLetter,
    FailedOutcome,
    MigratedOutcome,
    MigrationRequest,
    RolledBackOutcome,
)
from schemas.run_events import HOOK_NAMES, RunEvent
from streams import topics
from streams.codecs import FAILURE_HEADERS, HEADER_PREFIX, ORIGIN_HEADERS, REQUEST_HEADERS
from streams.trace_context import TRACEPARENT, TRACESTATE

_REF = "#/components/schemas/{model}"
FILE_NAME = "asyncapi.json"


def _schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [
            (MigrationRequest, "validation"),
            (MigratedOutcome, "serialization"),
            (FailedOutcome, "serialization"),
            (RolledBackOutcome, "serialization"),
            (DeadLetter, "serialization"),
            (RunEvent, "serialization"),
        ],
        ref_template=_REF,
    )
    definitions: dict[str, Any] = top["$defs"]
    return definitions


# The run-control topic's record kinds (``streams.control_topic``): the key says which.
_AT = {"type": "string", "format": "date-time", "description": "when it was written"}
_BY = {"type": "string", "description": "who wrote it (an operator, or a worker that paused)"}
_CONTROL_SCHEMAS = {
    "ControlPause": {
        "type": "object",
        "description": "key pause: whether every worker is to stop taking requests",
        "required": ["paused", "by", "at"],
        "properties": {
            "paused": {"type": "boolean"},
            "reason": {"type": ["string", "null"]},
            "by": _BY,
            "auto": {"type": "boolean", "description": "written by a worker (failure budget)"},
            "at": _AT,
        },
    },
    "ControlThrottle": {
        "type": "object",
        "description": "key throttle: the cluster's ceiling in users/s (null: none)",
        "required": ["rate", "by", "at"],
        "properties": {
            "rate": {"type": ["number", "null"], "minimum": MIN_RATE, "maximum": MAX_RATE},
            "by": _BY,
            "at": _AT,
        },
    },
    "ControlCancel": {
        "type": "object",
        "description": (
            "key cancel:<run id>: the run's request records below `before` (per request "
            "partition) that are not answered yet are answered failed with the code cancelled, "
            "touching no user; later records of the run (a replay) are processed as usual. A "
            "value without `at` or `before`, or a tombstone, leaves the run not cancelled."
        ),
        "required": ["run_id", "at", "by", "before"],
        "properties": {
            "run_id": {"type": "string"},
            "at": _AT,
            "by": _BY,
            "reason": {"type": ["string", "null"]},
            "before": {
                "type": "object",
                "description": "request partition (decimal text) → the topic's end offset "
                "when the run was cancelled",
                "additionalProperties": {"type": "integer", "minimum": 0},
            },
        },
    },
}


def _headers(what: str) -> dict[str, Any]:
    """The headers of a message: the service's own (``migrator-*``, none on requests) and the
    W3C trace context (every answer carries its request's trace, one header each)."""
    names = {
        "requests": {},
        "outcomes": {**ORIGIN_HEADERS, **REQUEST_HEADERS},
        "failed outcomes": {**FAILURE_HEADERS, **REQUEST_HEADERS},
    }.get(what, FAILURE_HEADERS)
    return {
        "type": "object",
        "description": f"On {what}: text, one value per name.",
        "properties": {
            **{
                HEADER_PREFIX + name: {"type": "string", "description": text}
                for name, text in names.items()
            },
            **{name: {"type": "string", "description": text} for name, text in _TRACE[what]},
        },
    }


_TRACE = {
    "requests": [
        (
            TRACEPARENT,
            "W3C trace context (optional): continued by the worker; absent or invalid, "
            "the worker starts a new trace (enqueue, replay and the HTTP API set it)",
        ),
        (TRACESTATE, "W3C vendor trace state, beside a valid traceparent (optional)"),
    ],
    **{
        what: [
            (
                TRACEPARENT,
                "W3C trace context of the request's trace (always, exactly one): its "
                "parent is the worker's span of the request when tracing is on, else the "
                "request's own traceparent, or a new trace's",
            ),
            (TRACESTATE, "the request's tracestate, carried beside it (if it had one)"),
        ]
        for what in ("outcomes", "failed outcomes", "dead letters")
    },
}


def _message(name: str, title: str, schema: str, *, key: str, headers: str | None = None) -> Any:
    message: dict[str, Any] = {
        "name": name,
        "title": title,
        "contentType": "application/json",
        "payload": {"$ref": _REF.format(model=schema)},
        "bindings": {"kafka": {"key": {"type": "string", "description": key}}},
    }
    if headers is not None:
        message["headers"] = _headers(headers)
    return message


def asyncapi_document(version: str) -> dict[str, Any]:
    outcome_key = "the user_id (UTF-8)"
    channels = {
        "requested": (topics.REQUESTED, "request", "Migration and rollback requests, in."),
        "migrated": (topics.MIGRATED, "migratedOutcome", "Outcomes with outcome = migrated."),
        "failed": (topics.FAILED, "failedOutcome", "Outcomes with outcome = failed."),
        "rolledBack": (
            topics.ROLLED_BACK,
            "rolledBackOutcome",
            "Outcomes with outcome = rolled_back.",
        ),
        "deadLetter": (topics.DEAD_LETTER, "deadLetter", "Records that are not valid requests."),
    }
    control = {
        "address": "{appId}-control",
        "description": (
            "Run control, compacted, read from its beginning by every worker: the latest "
            "record per key (pause, throttle, cancel:<run id>) is the state. Written by "
            "migrator control, migrator runs cancel, the admin API and workers that pause "
            "themselves."
        ),
        "parameters": {"appId": {"description": "MIGRATOR_APP_ID"}},
        "messages": {
            "pause": {"$ref": "#/components/messages/controlPause"},
            "throttle": {"$ref": "#/components/messages/controlThrottle"},
            "cancel": {"$ref": "#/components/messages/controlCancel"},
        },
    }
    runs = {
        "address": topics.RUN_EVENTS,
        "description": (
            "Run events: one record per thing that happened to a rollout (started, paused, "
            "auto_paused, resumed, throttled, cancelled, finished, verified), published once "
            "each by whichever worker leads, in one order (one partition). Compacted, keyed by "
            "the event id (derived from the cause: a consumer may dedupe by it). Hooks named "
            "after the events run with each: "
            + ", ".join(f"{kind} → {hook}" for kind, hook in HOOK_NAMES.items())
            + "."
        ),
        "messages": {"runEvent": {"$ref": "#/components/messages/runEvent"}},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "onboarding-migrator",
            "version": version,
            "description": (
                "Migrates users from the legacy onboarding status to onboarding sessions. Every "
                "accepted request record gets exactly one outcome on one of the three outcome "
                "topics (read_committed); every invalid record one dead letter. Events carry "
                f"schema_version {SCHEMA_VERSION}. See docs/contract.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "The brokers of KAFKA_BROKER_URL.",
            }
        },
        "channels": {
            **{
                name: {
                    "address": address,
                    "description": text,
                    "messages": {message: {"$ref": f"#/components/messages/{message}"}},
                }
                for name, (address, message, text) in channels.items()
            },
            "control": control,
            "runs": runs,
        },
        "operations": {
            **{
                (
                    "receiveRequests" if name == "requested" else f"send{name[0].upper()}{name[1:]}"
                ): {
                    "action": "receive" if name == "requested" else "send",
                    "channel": {"$ref": f"#/channels/{name}"},
                    "messages": [{"$ref": f"#/channels/{name}/messages/{message}"}],
                }
                for name, (_, message, _) in channels.items()
            },
            **{
                f"{action}Control": {
                    "action": action,
                    "channel": {"$ref": "#/channels/control"},
                    "messages": [
                        {"$ref": "#/channels/control/messages/pause"},
                        {"$ref": "#/channels/control/messages/throttle"},
                        {"$ref": "#/channels/control/messages/cancel"},
                    ],
                }
                # Every worker follows it; a worker whose failure budget is spent writes a pause.
                for action in ("receive", "send")
            },
            "sendRunEvents": {
                "action": "send",
                "channel": {"$ref": "#/channels/runs"},
                "messages": [{"$ref": "#/channels/runs/messages/runEvent"}],
            },
        },
        "components": {
            "messages": {
                "request": _message(
                    "request",
                    "Migration request",
                    "MigrationRequest",
                    key="must equal user_id; another key is dead-lettered",
                    headers="requests",
                ),
                "migratedOutcome": _message(
                    "migratedOutcome",
                    "Migrated outcome",
                    "MigratedOutcome",
                    key=outcome_key,
                    headers="outcomes",
                ),
                "failedOutcome": _message(
                    "failedOutcome",
                    "Failed outcome",
                    "FailedOutcome",
                    key=outcome_key,
                    headers="failed outcomes",
                ),
                "rolledBackOutcome": _message(
                    "rolledBackOutcome",
                    "Rolled-back outcome",
                    "RolledBackOutcome",
                    key=outcome_key,
                    headers="outcomes",
                ),
                "controlPause": _message(
                    "controlPause", "Pause or resume", "ControlPause", key="pause"
                ),
                "controlThrottle": _message(
                    "controlThrottle", "Throttle", "ControlThrottle", key="throttle"
                ),
                "controlCancel": _message(
                    "controlCancel", "Cancel a run", "ControlCancel", key="cancel:<run id>"
                ),
                "runEvent": _message(
                    "runEvent", "Run event", "RunEvent", key="the event id (UTF-8)"
                ),
                "deadLetter": _message(
                    "deadLetter",
                    "Dead letter",
                    "DeadLetter",
                    key="the original record's key",
                    headers="dead letters",
                ),
            },
            "schemas": {**_schemas(), **_CONTROL_SCHEMAS},
        },
    }


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onboarding-migrator")
    except PackageNotFoundError:
        return "0+unknown"


def asyncapi_text(version: str | None = None) -> str:
    version = version or package_version()
    return (
        json.dumps(asyncapi_document(version), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )
