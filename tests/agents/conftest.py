"""The in-memory store pair and the batch applier on it, shared by the agent tests."""

from __future__ import annotations

import pytest
from support.factories import FAST_RETRY, NOW, row
from support.fake_stores import FakePostgres, FakeRedis

from agents import batch_applier
from agents.batch_applier import BatchApplier


@pytest.fixture(autouse=True)
def fast_outage_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_applier, "_OUTAGE_POLL_S", (0.001, 0.005))


@pytest.fixture
def postgres() -> FakePostgres:
    server = FakePostgres()
    for user in ("u1", "u2", "u3", "u4"):
        server.tables.legacy[user] = row(user_id=user, completed_steps=["account", "profile"])
    return server


@pytest.fixture
def redis() -> FakeRedis:
    return FakeRedis()


@pytest.fixture
def core(postgres: FakePostgres, redis: FakeRedis) -> BatchApplier:
    return BatchApplier(postgres, redis, retry=FAST_RETRY, clock=lambda: NOW, app_id="test")
