"""The HTTP API's bodies and answers as pydantic models: what the views validate and answer with,
and what ``/openapi.json`` describes (``openapi.py``), so the description cannot drift from the
behaviour. Pure: no I/O.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from agents.core.control_state import MAX_RATE, MIN_RATE
from schemas.identifiers import RUN_ID_PATTERN, USER_ID_PATTERN

UserId = Annotated[str, Field(pattern=USER_ID_PATTERN, examples=["user-0000042"])]

# The flag of every open answer that may name users (see ``user_ids.py``).
_WITHHELD = (
    "true when the caller gave no token: the user-id fields are null (a bearer token, "
    "MIGRATOR_READ_TOKEN or MIGRATOR_ADMIN_TOKEN, includes them)"
)
_NULL_WITHOUT_TOKEN = "null without the read token (user_ids_withheld)"


class OptionsBody(BaseModel):
    """The body of ``POST migrate/{user_id}`` and ``POST rollback/{user_id}`` (may be empty)."""

    model_config = ConfigDict(extra="forbid")

    dry_run: StrictBool = Field(False, description="plan and answer, change nothing")
    reason: Annotated[str, Field(max_length=512)] | None = Field(
        None, description="free text carried by each request (audit log)"
    )
    requested_by: Annotated[str, Field(min_length=1, max_length=128)] = "http-api"


RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN, examples=["canary"])]


class BulkBody(OptionsBody):
    """The body of ``POST migrate`` and ``POST rollback``: ``user_ids``, or (migrate only)
    ``all``: everyone not yet migrated, except users rolled back and not migrated since unless
    ``include_rolled_back``, and users whose migration failed for good unless
    ``include_failed``. ``run`` names a run (a staged rollout) the requests belong to;
    with ``all``, ``percent`` takes only that cohort (by a hash of the user id)."""

    # The document says what the handler checks: ``user_ids`` (a list), or ``all`` (true).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["user_ids"], "properties": {"user_ids": {"type": "array"}}},
                {"required": ["all"], "properties": {"all": {"const": True}}},
            ]
        },
    )

    user_ids: Annotated[list[UserId], Field(min_length=1)] | None = None
    all: StrictBool = False
    include_rolled_back: StrictBool = False
    include_failed: StrictBool = Field(
        False, description='with "all": also users whose migration failed for good'
    )
    run: RunId | None = Field(None, description="the run the requests belong to")
    percent: Annotated[float, Field(gt=0, le=100)] | None = Field(
        None, description='with "all" and "run": only this percent cohort'
    )


class PauseBody(BaseModel):
    """The body of ``POST control/pause`` and ``POST control/resume`` (may be empty)."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=512)] | None = None
    by: Annotated[str, Field(min_length=1, max_length=128)] = "http-api"


class CancelBody(BaseModel):
    """The body of ``POST runs/{run_id}/cancel`` (may be empty): why, and who cancels."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=512)] | None = Field(
        None, description="carried by each cancelled answer and shown with the run"
    )
    by: Annotated[str, Field(min_length=1, max_length=128)] = "http-api"


class ThrottleBody(BaseModel):
    """The body of ``POST control/throttle``: ``rate`` users/s for the whole cluster, or
    ``null`` to lift the throttle."""

    model_config = ConfigDict(extra="forbid")

    rate: Annotated[float, Field(ge=MIN_RATE, le=MAX_RATE)] | None
    by: Annotated[str, Field(min_length=1, max_length=128)] = "http-api"


class ErrorAnswer(BaseModel):
    error: str


class Accepted(BaseModel):
    action: Literal["migrate", "rollback"]
    dry_run: bool
    count: int
    request_ids: list[str]
    trace_ids: list[str] = Field(
        default_factory=list,
        description="the W3C trace id of each request, in request_ids' order: each request "
        "starts a trace, or continues the call's traceparent header; its outcome carries it",
    )
    held_out_rolled_back: int | None = Field(
        None, description='with "all": rolled-back users left out'
    )
    held_out_failed: int | None = Field(
        None,
        description='with "all": users whose migration failed for good left out (fix their '
        "data, then replay; include_failed takes them)",
    )
    run_id: str | None = None


class LatencyMs(BaseModel):
    p50: float | None = Field(description="since the service first ran (all time)")
    p95: float | None = Field(description="since the service first ran (all time)")
    p99: float | None = Field(description="since the service first ran (all time)")
    samples: int
    recent_mean: float | None = Field(
        default=None,
        description="mean over the answers of the last 10 s (null: none): what a request "
        "waits now, where the all-time percentiles keep waits out of a pause",
    )


class TableSize(BaseModel):
    """One table of the service's schema on disk (``pg_total_relation_size``)."""

    bytes: int = Field(description="heap, indexes and TOAST")
    rows_estimate: int | None = Field(
        description="live rows per PostgreSQL's statistics (n_live_tup: close, not exact; "
        "null: none kept yet)"
    )


class Stats(BaseModel):
    requested: int
    migrated: int
    rolled_back: int
    failed: int
    dry_run: int
    already_done: int
    dead_lettered: int
    failed_by_code: dict[str, int]
    latency_ms: LatencyMs
    throughput_per_s_last_minute: float
    rate_per_s: float
    mirror_pending: int | None = None
    control: Control | None = None
    revalidation: Revalidation | None = None
    tables: dict[str, TableSize] | None = Field(
        default=None,
        description="each table's size: what grows (processed_records is pruned by the "
        "workers, see MIGRATOR_PROCESSED_RETENTION_S)",
    )


class Control(BaseModel):
    """What the control topic says (every worker applies it within 2 s)."""

    paused: bool
    reason: str | None
    by: str | None
    at: str | None
    auto: bool = Field(description="paused by a worker: failure budget or outage")
    throttle_per_s: float | None = Field(description="the cluster's ceiling in users/s")
    throttle_by: str | None
    throttle_at: str | None
    worker_paused: bool | None = Field(
        None, description="whether the answering worker has applied the pause"
    )
    worker_rate_per_s: float | None = Field(
        None, description="the answering worker's share of the throttle"
    )
    auto_pauses: int | None = Field(None, description="auto-pauses this worker started")
    failure_budget: str | None = Field(None, description="MIGRATOR_FAILURE_BUDGET, or null")
    failure_budget_used: float | None = Field(
        None,
        description="the answering worker's fullest failure window: its failures over those "
        "the budget allows (above 1 it pauses everyone); null with the budget off",
    )


class AuditFinding(BaseModel):
    partition: int
    offset: int = Field(description="the request record's offset")
    kind: Literal["unanswered", "duplicated"]
    extra_answers: int = Field(description="duplicated: answers beyond the first")
    request_id: str | None
    user_id: str | None = Field(
        description="null when the record has none, or without the read token (user_ids_withheld)"
    )
    found_at: str
    found_by: str = Field(description="host:pid of the worker, or the CLI")


class AuditPartition(BaseModel):
    partition: int
    audited_to: int = Field(description="every request record below this offset was judged")
    age_s: float = Field(description="seconds since the audit last moved this partition")


class AuditWorker(BaseModel):
    rounds: int
    records: int = Field(description="request records this worker judged")
    answers: int = Field(description="answer offsets this worker read")
    errors: int
    last_error: str | None
    last_round_at: str | None


class Audit(BaseModel):
    """The answer audit: every request record below the committed offset has one answer."""

    ok: bool = Field(description="no open finding")
    every_s: float = Field(description="MIGRATOR_AUDIT_EVERY_S (0: the audit is off)")
    open: dict[str, int] = Field(description="open findings by kind")
    findings: list[AuditFinding]
    partitions: list[AuditPartition]
    worker: AuditWorker = Field(description="the answering worker's own rounds")
    user_ids_withheld: bool = Field(False, description=_WITHHELD)


class Drift(BaseModel):
    """A legacy row changed after its snapshot: which columns, when the sampler saw it."""

    user_id: str | None = Field(description=_NULL_WITHOUT_TOKEN)
    detail: str
    at: str


class HistoryPoint(BaseModel):
    t: float = Field(description="seconds since the epoch (end of the interval)")
    outcomes_per_s: float
    failures_per_s: float


class ControlSeen(BaseModel):
    model_config = ConfigDict(extra="allow")

    seen_at: str = Field(description="when this worker saw the change (ISO time)")
    paused: bool
    auto: bool = False
    reason: str | None = None
    by: str | None = None
    throttle_per_s: float | None = None


class History(BaseModel):
    """What the answering worker kept since it started (at most the last hour)."""

    every_s: float
    since: str = Field(description="when the worker started keeping it (ISO time)")
    points: list[HistoryPoint]
    control_changes: list[ControlSeen]


class Revalidation(BaseModel):
    """The background re-validation, summed over the workers."""

    sampled: int
    sampled_recent: int
    users_with_mismatch: int
    mismatches: dict[str, int] = Field(description="failed checks, by check name")
    latest_user_ids: dict[str, list[str]] | None = Field(
        description="the latest users failing each check; " + _NULL_WITHOUT_TOKEN
    )
    drift: list[Drift] = Field(description="legacy rows changed after their snapshot")
    errors: int
    last_at: str | None
    rate_per_s: float | None = None
    user_ids_withheld: bool = Field(False, description=_WITHHELD)


class LastVerified(BaseModel):
    """A run's latest finished ``migrator verify --run``."""

    verify_id: int
    at: str = Field(description="when it finished")
    ok: bool = Field(description="true: every check held for every user of the run")
    checked: int = Field(description="users checked")
    mismatched: int = Field(description="users with at least one mismatch")
    by_check: dict[str, int] = Field(description="users per failed check")


class Run(BaseModel):
    run_id: str
    state: Literal["waiting", "running", "finished", "cancelled", "paused", "auto-paused"] = Field(
        description="paused / auto-paused: not finished while the cluster is paused; cancelled: "
        "POST runs/{run_id}/cancel (or migrator runs cancel) was given; the figures go on "
        "counting its answers"
    )
    created_at: str
    created_by: str
    requested: int = Field(description="migrate requests published in the run")
    done: int = Field(description="migrate requests answered")
    migrated: int
    failed: int
    failed_by_code: dict[str, int]
    rollback_requested: int
    rolled_back: int
    rollback_failed: int
    remaining: int
    rate_per_s: float = Field(
        description="running: answers per second over the last 10 s (the cluster's rate "
        "window); finished: its average over its duration"
    )
    eta_s: float | None
    duration_s: float | None = Field(
        default=None, description="first answer to the last (finished) or to now"
    )
    started_at: str | None = Field(description="its first answer")
    finished_at: str | None = Field(description="the answer that completed it")
    selections: list[dict[str, Any]]
    cancelled_at: str | None = Field(None, description="when the run was cancelled")
    cancelled_by: str | None = Field(None, description="who cancelled it")
    cancel_reason: str | None = None
    last_verified: LastVerified | None = Field(
        None, description="its latest finished `migrator verify --run` (null: never verified)"
    )


class Runs(BaseModel):
    runs: list[Run]


class RunCancelled(BaseModel):
    """The answer of ``POST runs/{run_id}/cancel``: the cancel is on the control topic."""

    run: Run
    unanswered: int = Field(
        description="the run's requests not answered yet by its counts: every worker answers "
        "them failed/cancelled (error code cancelled, retryable), touching no user"
    )
    paused: bool = Field(
        description="the cluster is paused: they are answered once it resumes (POST control/resume)"
    )
    before: dict[str, int] = Field(
        description="per request partition, the end offset when cancelled: the run's records "
        "below it are cancelled, later ones (a replay) are processed as usual"
    )


class LocalStats(BaseModel):
    totals: dict[str, Any]


class Progress(BaseModel):
    legacy_total: int
    migrated: int
    failed_for_good: int
    remaining: int
    percent: float
    rate_per_s: float
    eta_s: float | None
    stats: Stats
    backlog: int | None = None
    backlog_by_partition: dict[str, int] | None = Field(
        default=None,
        description="per request partition: end offset minus the committed offset (what "
        "Kafka's consumer-groups tool calls LAG)",
    )
    backlog_error: str | None = None
    control: Control | None = None
    runs: list[Run] | None = Field(None, description="the latest runs")


class CheckResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    ok: bool
    error: str | None = None
    since: str | None = Field(
        default=None, description="failing since (ISO time; first seen by the answering worker)"
    )


class WorkerIdentity(BaseModel):
    pid: int
    host: str
    app_id: str
    event_loop: str | None = Field(default=None, description="uvloop or asyncio")
    gc_frozen_objects: int | None = Field(
        default=None,
        description="objects frozen out of the garbage collector's sight once the worker had "
        "started (0 before then)",
    )


class Health(BaseModel):
    ok: bool = Field(description="every dependency answers (false: HTTP 503)")
    status: Literal["ok", "degraded", "down"] = Field(
        description="degraded: dependencies answer, but a check that no restart cures failed "
        "(answers: request records without exactly one answer)"
    )
    checks: dict[str, CheckResult]
    worker: WorkerIdentity
    control: Control | None = None


class ValidationCheck(BaseModel):
    name: str
    ok: bool
    detail: str


class Validation(BaseModel):
    user_id: str
    state: Literal["migrated", "rolled_back", "never_migrated"]
    migrated: bool
    ok: bool
    checks: list[ValidationCheck]


class WorkerRow(BaseModel):
    worker: str = Field(description="host:pid")
    this: bool = Field(description="the worker that answers this request")
    partitions: list[int]
    lag: dict[str, int] = Field(description="per owned partition: records not yet answered")
    lag_total: int
    in_flight: int = Field(description="records in the batches being applied now")
    rss_bytes: int | None
    started_at: str
    report_age_s: float
    paused: bool = Field(False, description="whether the worker has applied the pause")


class Workers(BaseModel):
    workers: list[WorkerRow]


class FailureCode(BaseModel):
    code: str
    retryable: bool
    users: int
    sample_user_ids: list[str] | None = Field(description="the latest few; " + _NULL_WITHOUT_TOKEN)


class Failures(BaseModel):
    failures: list[FailureCode]
    user_ids_withheld: bool = Field(False, description=_WITHHELD)


def answer(model: type[BaseModel], value: Any) -> dict[str, Any]:
    """``value`` checked against the documented answer, as JSON-ready data."""
    return model.model_validate(value).model_dump(mode="json")
