"""Fail-stop on records the stream lost, instead of committing past them.

Faust marks offsets it never delivered as processed ("gaps"); that is right for transaction
markers and compacted topics, but the request topic has neither, so a gap there means records
were dropped inside the stream (seen right after a restart's recovery). Committing past them
would lose requests. Instead the worker re-executes itself before the gap is recorded: the new
process resumes from the last committed offset, open transactions of the old one are fenced and
aborted, and the database ledger makes the redelivered records answer with identical outcomes.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from faust.transport.consumer import Consumer

log = logging.getLogger(__name__)

_installed: set[str] = set()


def _restart_process() -> None:
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, *sys.argv])


def install(topic: str, *, on_gap: Callable[[], None] = _restart_process) -> None:
    """Guard ``topic`` against gaps in every Faust consumer of this process (idempotent)."""
    if topic in _installed:
        return
    _installed.add(topic)
    original: Callable[..., Coroutine[Any, Any, None]] = Consumer._add_gap  # noqa: SLF001

    async def _add_gap(self: Consumer, tp: Any, offset_from: int, offset_to: int) -> None:
        if tp.topic in _installed:
            log.critical(
                "records %d..%d of %s were lost inside the stream; restarting the worker to "
                "read them again from the last committed offset",
                offset_from, offset_to, tp,
            )  # fmt: skip
            on_gap()
            return
        await original(self, tp, offset_from, offset_to)

    Consumer._add_gap = _add_gap  # type: ignore[method-assign]  # noqa: SLF001
