"""The Faust app: topics, the stats table, the service that owns the pools, agents and views.

``create_app(settings)`` builds everything explicitly from a ``Settings`` object (tests build their
own); the module attribute ``app`` is made from the environment on first access, which is what
``faust -A streams.app worker`` and ``migrator worker`` use.

Topics carry raw bytes: requests are decoded with pydantic at the edge, so an invalid record
reaches the dead-letter topic with its original bytes instead of crashing the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust

from streams import topics
from streams.answer_audit import AnswerAuditor
from streams.context import ServiceContext
from streams.control_topic import worker_name
from streams.control_watcher import ControlWatcher
from streams.faust_internals import MigratorApp, configure_worker_consumer
from streams.heartbeat import StatusReporter
from streams.history import HistorySampler
from streams.hook_runner import HookRunner
from streams.migrate_agent import register_agents
from streams.processed_pruner import ProcessedPruner
from streams.publishers import BatchPublisher, Settler, new_publisher
from streams.resources import Resources
from streams.revalidation_sampler import Revalidator
from streams.run_event_publisher import RunEventPublisher
from streams.settings import Settings
from streams.tracing import WorkerTracing, new_tracing
from streams.web.views import json_errors, register_views

# How much of each request partition one fetch brings (Kafka's own default). A record larger
# than this still arrives (the broker returns at least one whole batch, whatever this says);
# what it bounds is the backlog held in memory at once. With 4 MiB, a flood kept up to 16 MiB
# of requests, as Python objects, per fetch: worker peak RSS 163-180 MiB on 100,000 users
# against 131-141 MiB with 1 MiB, at the same throughput.
FETCH_BYTES_PER_PARTITION = 1024 * 1024


def faust_options(settings: Settings) -> dict[str, Any]:
    """How Faust is set up for the worker (the app id aside)."""
    return {
        "broker": settings.kafka_broker_url,
        # Exactly-once is the service's own (streams/exactly_once.py); Faust's would put the
        # stats table's recovery and every rebalance in the way (see the README, "Failures").
        "processing_guarantee": "at_least_once",
        "store": "memory://",
        "datadir": f"{settings.data_dir}/{settings.app_id}",
        "web_port": settings.web_port,
        "web_host": settings.web_host,
        "web_bind": settings.web_host,
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication_factor,
        "topic_allow_declare": True,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "table_standby_replicas": 0,
        "consumer_auto_offset_reset": "earliest",
        "broker_commit_every": settings.batch_size,
        "broker_commit_interval": 1.0,
        "stream_buffer_maxsize": max(4096, settings.batch_size * 4),
        "producer_max_request_size": topics.MAX_DEAD_LETTER_BYTES + 64 * 1024,
        "producer_max_batch_size": topics.PRODUCE_BATCH_BYTES,
        "consumer_max_fetch_size": FETCH_BYTES_PER_PARTITION,
        "web_transport": "tcp://",
        # 404 and 405 answer JSON like every other error (the routes themselves: register_views).
        "web_application_options": {"middlewares": [json_errors]},
        # A worker that died is noticed within 10 s (MIGRATOR_SESSION_TIMEOUT_S), not Faust's
        # default 60 s, so its partitions (and their open transactions) move to a live worker
        # quickly.
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout_s / 3),
        # Static membership (KIP-345) when MIGRATOR_INSTANCE_ID is set: a restart within the
        # session timeout keeps the group's generation and every other worker's partitions.
        "consumer_group_instance_id": settings.instance_id,
        "autodiscover": False,
        "logging_config": None,
    }


PublisherFactory = Callable[[Settings, faust.App], BatchPublisher]


def create_app(
    settings: Settings,
    *,
    publisher: PublisherFactory = new_publisher,
    tracing: WorkerTracing | None = None,
) -> ServiceContext:
    """Build the worker: the app, its topic and table, the publisher of the delivery guarantee
    (chosen once, here: ``publisher``), its tracing (chosen once too, from the ``OTEL_*``
    variables unless given), the services it runs, the agent and the views."""
    configure_worker_consumer()
    tracing = tracing or new_tracing(settings)
    app: MigratorApp[BatchPublisher] = MigratorApp(
        settings.app_id,
        rebalance=lambda app: publisher(settings, app),
        **faust_options(settings),
    )

    requests = app.topic(
        topics.REQUESTED,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
        replicas=settings.topic_replication_factor,
    )
    # The latest counter totals of the request partitions this worker answers, as committed by
    # their batches' PostgreSQL transactions (``partition_counters`` holds the truth). Entries are
    # set directly, never through the changelog: recovery has nothing to check, nothing to lose.
    stats = app.Table(
        "stats",
        default=dict,
        partitions=settings.topic_partitions,
        schema=faust.Schema(
            key_type=str, value_type=None, key_serializer="raw", value_serializer="json"
        ),
    )
    resources = Resources(settings, app.rebalance, tracing)
    control = ControlWatcher(settings, app, resources)
    app.assignment_listeners.append(control.on_assigned)
    revalidator = Revalidator(
        settings,
        resources,
        share=lambda: len(control.owned_partitions()) / settings.topic_partitions,
    )
    auditor = AnswerAuditor(
        settings,
        resources,
        owned=lambda: [tp.partition for tp in control.owned_partitions()],
        name=worker_name,
        every_s=settings.audit_every_s,
    )
    pruner = ProcessedPruner(settings, resources)
    # Hooks run on the workers that have them; run events are published by one worker at a
    # time (a PostgreSQL advisory lock), whichever it is.
    hooks = None
    run_events = None
    if settings.run_events:
        hooks = HookRunner(settings, resources) if settings.hooks_dir is not None else None
        run_events = RunEventPublisher(settings, resources, control, hooks)
    context = ServiceContext(
        settings=settings,
        app=app,
        requests=requests,
        stats=stats,
        resources=resources,
        publisher=app.rebalance,
        control=control,
        revalidator=revalidator,
        auditor=auditor,
        pruner=pruner,
        run_events=run_events,
        hooks=hooks,
        tracing=tracing,
    )
    # Every service the worker runs, in one place (Faust starts instances as well as classes).
    services: list[Any] = [
        resources,
        control,
        revalidator,
        StatusReporter(context),
        Settler(app.rebalance),
        HistorySampler(resources, settings.app_id, context.history),
    ]
    if settings.audit_every_s > 0:
        services.append(auditor)
    if settings.processed_retention_s > 0:
        services.append(pruner)
    services += [service for service in (run_events, hooks) if service is not None]
    for service in services:
        app.service(service)
    context.agents.update(register_agents(context))
    register_views(context)
    return context


_default: ServiceContext | None = None


def default() -> ServiceContext:
    """The app built from the environment, once per process."""
    global _default
    if _default is None:
        _default = create_app(Settings.from_env())
    return _default


def __getattr__(name: str) -> Any:
    if name == "app":
        return default().app
    raise AttributeError(name)
