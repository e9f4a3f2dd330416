"""E2E fixtures: one fresh stack per test module (topic names are fixed by the contract)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import Stack, start_stack, stop_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    started = start_stack()
    yield started
    stop_stack(started)
