"""What the agent, the views and the worker's services are handed: the settings, the app, its
topic and table, the delivery guarantee, the resources, the control watcher and the samplers.

Its own module so that ``streams.app`` (which builds it), the agent and the views all import it
and none of them imports another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.answer_audit import AnswerAuditor
from streams.control_watcher import ControlWatcher
from streams.faust_internals import MigratorApp
from streams.history import OutcomeHistory
from streams.hook_runner import HookRunner
from streams.processed_pruner import ProcessedPruner
from streams.publishers import BatchPublisher
from streams.resources import Resources
from streams.revalidation_sampler import Revalidator
from streams.run_event_publisher import RunEventPublisher
from streams.settings import Settings
from streams.tracing import Untraced, WorkerTracing


@dataclass
class InFlight:
    """Request records in the batches this worker's lanes are applying now (the dashboard's
    "in flight"): taken from the topic, not yet answered."""

    records: int = 0


@dataclass(frozen=True)
class ServiceContext:
    """Everything the agent, the views and the heartbeat are handed: plain data, built once by
    ``create_app``. The delivery guarantee is ``publisher``, chosen there."""

    settings: Settings
    app: MigratorApp[Any]
    requests: Any  # the request topic
    stats: Any  # the stats table
    resources: Resources
    publisher: BatchPublisher
    control: ControlWatcher
    revalidator: Revalidator
    auditor: AnswerAuditor
    pruner: ProcessedPruner
    run_events: RunEventPublisher | None = None  # None: MIGRATOR_RUN_EVENTS=off
    hooks: HookRunner | None = None  # None: no MIGRATOR_HOOKS_DIR
    tracing: WorkerTracing = field(default_factory=Untraced)  # chosen once by create_app
    in_flight: InFlight = field(default_factory=InFlight)
    history: OutcomeHistory = field(default_factory=OutcomeHistory)
    agents: dict[str, Any] = field(default_factory=dict)
