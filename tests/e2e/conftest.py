"""E2E fixtures: one fresh stack per test module (topic names are fixed by the contract)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import Stack, start_stack, stop_stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    started = start_stack()
    yield started
    stop_stack(started)
