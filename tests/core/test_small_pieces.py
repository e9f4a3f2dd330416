"""Retry policy, outcomes, consistency checks and the data generator."""

from __future__ import annotations

import uuid

import pytest
from support.factories import NOW, SESSION, row

from agents.core.checks import check_session
from agents.core.decide import Failed, Migrate, Work
from agents.core.documents import document_from_plan
from agents.core.manifest import manifest_checksum
from agents.core.outcomes import build_outcome, event_id
from agents.core.planner import PlanError, plan_migration
from agents.core.retry import RetryPolicy
from agents.jobs.seed import COLUMNS, SeedOptions, generate
from schemas.events import ErrorCode, MigrationRequest
from schemas.legacy import LegacyRow


def test_retry_delays_grow_and_stay_bounded() -> None:
    policy = RetryPolicy(max_retries=6, base_delay_s=0.1, max_delay_s=1.0, jitter=0.2)
    middle = [policy.delay(n) for n in range(6)]
    assert middle[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert all(0 <= policy.delay(n, r) <= 1.0 for n in range(10) for r in (0.0, 0.5, 0.999))
    assert policy.delay(1, 0.0) == pytest.approx(0.16) and policy.delay(1, 0.999) < 0.24


def make_work(offset: int | None = 5) -> Work:
    return Work(MigrationRequest(request_id=uuid.uuid4(), user_id="user-1"), 1, offset)


def test_outcomes_of_a_migration_and_a_failure() -> None:
    work = make_work()
    plan = plan_migration(row(status="completed"), session_id=SESSION, now=NOW)
    migrated = build_outcome(work, Migrate(plan), now=NOW, duration_ms=2.5)
    assert migrated.outcome == "migrated" and migrated.session_id == SESSION
    assert migrated.bcm is not None and migrated.bcm.checksum == plan.manifest_checksum
    assert migrated.legacy_snapshot_sha256 == plan.legacy_sha256 and migrated.error is None
    failed = build_outcome(
        work, Failed(ErrorCode.DATABASE_UNAVAILABLE, "down"), now=NOW, duration_ms=1
    )
    assert failed.error is not None and failed.error.retryable and failed.request is not None
    assert event_id(work) == event_id(work) != event_id(make_work())


def test_checks_pass_on_a_consistent_session_and_name_each_corruption() -> None:
    plan = plan_migration(row(status="completed"), session_id=SESSION, now=NOW)
    doc = document_from_plan(plan)
    manifests = [{"version": 1, "manifest": plan.manifest, "checksum": plan.manifest_checksum}]
    kwargs = dict(
        redis_pointer=str(SESSION),
        manifests=manifests,
        snapshot=plan.legacy_snapshot,
        snapshot_sha256_recorded=plan.legacy_sha256,
        snapshot_sha256_actual=plan.legacy_sha256,
        legacy_status="migrated",
    )
    ok = check_session(postgres_doc=doc, redis_doc=dict(doc), **kwargs)
    assert all(c.ok for c in ok), ok

    def failing(postgres_doc: dict, **changes: object) -> set[str]:
        args = {**kwargs, **changes}
        checks = check_session(
            postgres_doc=postgres_doc, redis_doc=args.pop("redis_doc", doc), **args
        )
        return {c.name for c in checks if not c.ok}

    assert failing(
        {**doc, "completion_percentage": 1.0}, redis_doc={**doc, "completion_percentage": 1.0}
    ) == {"percentage_consistent"}
    assert "status_consistent" in failing({**doc, "status": "in_progress"})
    assert "twenty_four_steps" in failing({**doc, "steps": doc["steps"][:23]})
    assert failing(doc, manifests=[]) == {"manifest_present_iff_completed"}
    bad = [{**manifests[0], "checksum": "0" * 64}]
    assert failing(doc, manifests=bad) == {"manifest_checksum_recomputes"}
    assert failing(doc, legacy_status="completed") == {"legacy_row_marked_migrated"}
    assert failing(doc, redis_doc=None) >= {"session_in_redis", "redis_equals_postgres"}
    assert manifest_checksum(plan.manifest or {}) == plan.manifest_checksum


def test_seed_generator_is_deterministic_mixed_and_plannable() -> None:
    rows = list(generate(SeedOptions(users=400, seed=5)))
    assert rows == list(generate(SeedOptions(users=400, seed=5)))
    assert len({r[0] for r in rows}) == 400
    assert {r[2] for r in rows} == {"not_started", "in_progress", "completed"}
    assert any(ord(ch) > 127 for r in rows for ch in str(r[5]))
    for values in rows:
        legacy = LegacyRow(**dict(zip(COLUMNS, values, strict=True)))
        plan_migration(legacy, session_id=SESSION, now=NOW)
    broken = list(generate(SeedOptions(users=400, seed=5, problem_ratio=0.5)))
    failures = 0
    for values in broken:
        legacy = LegacyRow(**dict(zip(COLUMNS, values, strict=True)))
        try:
            plan_migration(legacy, session_id=SESSION, now=NOW)
        except PlanError:
            failures += 1
    assert failures > 100


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    from streams.stack.kafka import new_cluster_id

    ids = [new_cluster_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids)


def test_batches_linger_only_on_a_steady_trickle() -> None:
    from streams.lanes import TRICKLE_LINGER_S, linger_s

    assert linger_s(0.0, previous_size=1, idle_s=5.0, most=500) == 0.0  # alone: at once
    assert linger_s(0.0, previous_size=400, idle_s=0.0, most=500) == 0.0  # backlog
    assert linger_s(0.0, previous_size=10, idle_s=0.01, most=500) == TRICKLE_LINGER_S
    assert linger_s(0.3, previous_size=1, idle_s=5.0, most=500) == 0.3  # configured
