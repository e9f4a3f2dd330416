"""The service's configuration, read from the environment in exactly one place.

No other module reads ``os.environ``: everything else receives a ``Settings`` object, so tests can
build one explicitly and a misconfiguration is reported once, at start-up, with the variable's name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from agents.core.control_state import FailureBudget

ProcessingGuarantee = Literal["exactly_once", "at_least_once"]
Tracing = Literal["off", "otlp", "console"]

# Tokens people paste from examples; accepting them would make the admin API (or users' data)
# public in practice.
_PLACEHOLDER_TOKENS = frozenset({"changeme", "change-me", "secret", "token", "admin", "password"})

_ENV_NAMES: dict[str, str] = {
    "kafka_broker_url": "KAFKA_BROKER_URL",
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "app_id": "MIGRATOR_APP_ID",
    "web_port": "MIGRATOR_WEB_PORT",
    "web_host": "MIGRATOR_WEB_HOST",
    "admin_token": "MIGRATOR_ADMIN_TOKEN",
    "read_token": "MIGRATOR_READ_TOKEN",
    "processing_guarantee": "MIGRATOR_PROCESSING_GUARANTEE",
    "topic_partitions": "MIGRATOR_TOPIC_PARTITIONS",
    "topic_replication_factor": "MIGRATOR_TOPIC_REPLICATION_FACTOR",
    "topic_min_insync_replicas": "MIGRATOR_TOPIC_MIN_INSYNC_REPLICAS",
    "instance_id": "MIGRATOR_INSTANCE_ID",
    "session_timeout_s": "MIGRATOR_SESSION_TIMEOUT_S",
    "batch_size": "MIGRATOR_BATCH_SIZE",
    "batch_within_s": "MIGRATOR_BATCH_WITHIN_S",
    "max_retries": "MIGRATOR_MAX_RETRIES",
    "retry_base_delay_s": "MIGRATOR_RETRY_BASE_DELAY_S",
    "retry_max_delay_s": "MIGRATOR_RETRY_MAX_DELAY_S",
    "data_dir": "MIGRATOR_DATA_DIR",
    "log_level": "MIGRATOR_LOG_LEVEL",
    "log_format": "MIGRATOR_LOG_FORMAT",
    "event_loop": "MIGRATOR_EVENT_LOOP",
    "failure_budget": "MIGRATOR_FAILURE_BUDGET",
    "outage_pause_s": "MIGRATOR_OUTAGE_PAUSE_S",
    "revalidate_per_s": "MIGRATOR_REVALIDATE_PER_S",
    "audit_every_s": "MIGRATOR_AUDIT_EVERY_S",
    "processed_retention_s": "MIGRATOR_PROCESSED_RETENTION_S",
    "run_events": "MIGRATOR_RUN_EVENTS",
    "hooks_dir": "MIGRATOR_HOOKS_DIR",
    "hook_timeout_s": "MIGRATOR_HOOK_TIMEOUT_S",
}


class SettingsError(ValueError):
    """A configuration value is unusable; the message names the environment variable."""


class Settings(BaseModel):
    """Everything the worker and the command line need to know about their surroundings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_broker_url: str = "kafka://localhost:9092"
    database_url: str = "postgresql://postgres@localhost:5432/migrator"
    redis_url: str = "redis://localhost:6379/0"
    app_id: str = Field(default="onboarding-migrator", min_length=1, max_length=200)
    web_port: int = Field(default=6066, ge=0, le=65535)
    web_host: str = "0.0.0.0"
    admin_token: SecretStr | None = None
    # Reads that hand out users' ids or state (validate, run reports, the ids in failures,
    # revalidation, audit); the admin token is accepted for them too.
    read_token: SecretStr | None = None
    processing_guarantee: ProcessingGuarantee = "exactly_once"
    topic_partitions: int = Field(default=4, ge=1, le=1024)
    topic_replication_factor: int = Field(default=1, ge=1, le=16)
    # Copies that must have a write before Kafka acknowledges it (the transactional producers
    # send with acks=all). Production: replication factor 3, min in-sync 2, so one broker may
    # be away and every acknowledged outcome still exists twice.
    topic_min_insync_replicas: int = Field(default=1, ge=1, le=16)
    # Static group membership (KIP-345): a worker restarted under the same id within the
    # session timeout takes its partitions back without a rebalance. Unset: dynamic membership
    # (why that is the default: README, "Restarts without a rebalance").
    instance_id: str | None = Field(default=None, min_length=1, max_length=200)
    # How long the group waits for a silent worker before its partitions move: the longest a
    # crashed worker's partitions stand still, and the window a static member has to return.
    session_timeout_s: float = Field(default=10.0, ge=6, le=300)
    batch_size: int = Field(default=500, ge=1, le=10_000)
    batch_within_s: float = Field(default=0.0, ge=0, le=60)
    max_retries: int = Field(default=4, ge=0, le=20)
    retry_base_delay_s: float = Field(default=0.2, ge=0, le=60)
    retry_max_delay_s: float = Field(default=5.0, ge=0, le=600)
    data_dir: str = "/tmp/onboarding-migrator"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    # uvloop: the flood about +6 % users/s and -8 % worker CPU against asyncio's own loop on
    # this machine, quiet (more under load; the README has the runs); asyncio is there to tell
    # a loop bug.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Pause every worker when more than 5 % of the last 500 outcomes failed (overall or in a
    # run); "off" disables it.
    failure_budget: str = "5%/500"
    # Pause every worker when PostgreSQL or Redis has been unavailable this long (0: never).
    outage_pause_s: float = Field(default=30.0, ge=0, le=86_400)
    # Migrated users re-validated per second by the background sampler (0: off).
    revalidate_per_s: float = Field(default=2.0, ge=0, le=1_000)
    # Seconds between two rounds of the answer audit (every request answered once; 0: off).
    audit_every_s: float = Field(default=10.0, ge=0, le=3_600)
    # How long an answer stays in ``processed_records`` after it was given, once its record is
    # below the group's committed offset (0: never pruned). The window is what keeps pruning
    # from touching exactly-once: only a worker frozen longer than this could redo a record.
    processed_retention_s: float = Field(default=7 * 86_400, ge=0, le=365 * 86_400)
    # Publish run events to user-migration-runs (one worker at a time publishes them all).
    run_events: bool = True
    # Executables named after the run events (on-run-finished, on-auto-pause, ...) that the
    # worker publishing the events runs for each; unset: no hooks.
    hooks_dir: str | None = None
    # The longest a hook may run before it is killed (and logged as timed out).
    hook_timeout_s: float = Field(default=30.0, gt=0, le=3_600)
    # Spans exported (streams.tracing), from the standard OTEL_* variables (``tracing_from``).
    tracing: Tracing = "off"

    @field_validator("run_events", mode="before")
    @classmethod
    def _on_off(cls, value: object) -> object:
        if isinstance(value, str):
            word = value.strip().lower()
            if word in ("on", "true", "1", "yes"):
                return True
            if word in ("off", "false", "0", "no"):
                return False
            raise ValueError("must be on or off")
        return value

    @field_validator("hooks_dir")
    @classmethod
    def _hooks_dir(cls, value: str | None) -> str | None:
        """Refused at start-up rather than found missing at the first auto-pause."""
        if value is None:
            return None
        from pathlib import Path

        if not Path(value).is_dir():
            raise ValueError(f"{value!r} is not a directory")
        return value

    @field_validator("failure_budget")
    @classmethod
    def _budget(cls, value: str) -> str:
        from agents.core.control_state import parse_budget

        parse_budget(value)
        return value

    @property
    def budget(self) -> FailureBudget | None:
        from agents.core.control_state import parse_budget

        return parse_budget(self.failure_budget)

    @field_validator("admin_token", "read_token", mode="before")
    @classmethod
    def _refuse_placeholder_token(cls, value: object) -> object:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            return value
        if value.strip().lower() in _PLACEHOLDER_TOKENS or len(value) < 16:
            raise ValueError("must be 16+ characters and not a placeholder such as 'changeme'")
        return value

    @model_validator(mode="after")
    def _read_token_is_not_the_admin_token(self) -> Settings:
        """Refused at start-up: whoever is handed the read token (a dashboard viewer) could
        write with it too."""
        if self.read_token is not None and self.read_token == self.admin_token:
            raise ValueError(
                "MIGRATOR_READ_TOKEN must differ from MIGRATOR_ADMIN_TOKEN (the read token is "
                "handed to people who may read, not write)"
            )
        return self

    @model_validator(mode="after")
    def _min_insync_within_replication(self) -> Settings:
        """Refused at start-up: Kafka would refuse every write to such a topic."""
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                f"MIGRATOR_TOPIC_MIN_INSYNC_REPLICAS={self.topic_min_insync_replicas} exceeds "
                f"MIGRATOR_TOPIC_REPLICATION_FACTOR={self.topic_replication_factor} (no write "
                "could ever be acknowledged)"
            )
        return self

    @field_validator("instance_id")
    @classmethod
    def _instance_id_charset(cls, value: str | None) -> str | None:
        if value is not None and not all(c.isalnum() or c in "._-" for c in value):
            raise ValueError("only letters, digits, '.', '_' and '-'")
        return value

    @field_validator("kafka_broker_url")
    @classmethod
    def _kafka_scheme(cls, value: str) -> str:
        if not value.startswith("kafka://"):
            raise ValueError("must look like kafka://host:port[;host:port]")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must look like postgresql://user@host:port/dbname")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must look like redis://host:port/db")
        return value

    @property
    def kafka_bootstrap_servers(self) -> list[str]:
        """``host:port`` pairs for clients that are not Faust (aiokafka admin, producers)."""
        hosts = self.kafka_broker_url.removeprefix("kafka://")
        return [h for h in hosts.replace(",", ";").split(";") if h]

    @property
    def admin_token_value(self) -> str | None:
        return self.admin_token.get_secret_value() if self.admin_token else None

    @property
    def read_token_value(self) -> str | None:
        return self.read_token.get_secret_value() if self.read_token else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: the process environment).

        Raises ``SettingsError`` naming the variable at fault: start-up fails with one clear line.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            field: env[name] for field, name in _ENV_NAMES.items() if env.get(name, "") != ""
        }
        values["tracing"] = tracing_from(env)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                if not error["loc"]:  # a rule across variables: its message names them
                    problems.append(str(error["msg"]).removeprefix("Value error, "))
                    continue
                field = str(error["loc"][0])
                problems.append(f"{_ENV_NAMES.get(field, field)}: {error['msg']}")
            raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


_OTLP_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def tracing_from(env: Mapping[str, str]) -> Tracing:
    """Whether and where spans are exported, by the standard OpenTelemetry variables.

    Off unless asked: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console`` or ``none``) or an OTLP
    endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) turns it
    on; ``OTEL_SDK_DISABLED=true`` turns it off whatever else is set. Only OTLP over HTTP
    (``http/protobuf``) is installed. The SDK reads the rest of the ``OTEL_*`` variables itself.
    Raises ``SettingsError`` naming the variable at fault.
    """
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "off"
    exporters = [
        name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",") if name
    ]
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not exporters:
        exporters = ["otlp"] if endpoint else ["none"]
    if len(exporters) > 1 or exporters[0] not in ("otlp", "console", "none"):
        raise SettingsError(
            f"invalid configuration: OTEL_TRACES_EXPORTER: {env['OTEL_TRACES_EXPORTER']!r} is "
            "not one of otlp, console, none"
        )
    chosen = exporters[0]
    if chosen == "none":
        return "off"
    if chosen == "otlp":
        for name in _OTLP_PROTOCOLS:
            protocol = env.get(name, "").strip()
            if protocol:
                if protocol != "http/protobuf":
                    raise SettingsError(
                        f"invalid configuration: {name}: {protocol!r} is not supported "
                        "(only http/protobuf is installed)"
                    )
                break
        return "otlp"
    return "console"
