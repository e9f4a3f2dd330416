"""Fail-stop on records the stream lost, instead of committing past them.

Faust marks offsets it never delivered as processed ("gaps"); that is right for transaction
markers and compacted topics, but the request topic has neither, so a gap there means records
were dropped inside the stream (seen right after a restart's recovery). Committing past them
would lose requests. Instead the worker re-executes itself before the gap is recorded: the new
process resumes from the last committed offset, open transactions of the old one are fenced and
aborted, and the database ledger makes the redelivered records answer with identical outcomes.
The race that causes such gaps (a fetch between Faust's resume and seek after a rebalance) is
also narrowed by pausing the guarded partitions while Faust seeks them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from faust.transport.consumer import Consumer

log = logging.getLogger(__name__)

# Topic name → what to do when a gap shows up in it. Faust's consumer is patched once.
_guarded: dict[str, Callable[[], None]] = {}


def restart_process() -> None:
    """Replace this process with a fresh run of the same command line."""
    # sys.orig_argv is the command line as typed (``-m streams.cli worker``, ``migrator
    # worker``, ``faust -A …``); sys.argv would turn ``-m`` into a script path and run a
    # module of the package as a top-level script.
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def install(topic: str, *, on_gap: Callable[[], None] = restart_process) -> None:
    """Guard ``topic`` against gaps in every Faust consumer of this process."""
    if not _guarded:
        _patch_consumer()
    _guarded[topic] = on_gap


def _patch_consumer() -> None:
    add_gap: Callable[..., Coroutine[Any, Any, None]] = Consumer._add_gap  # noqa: SLF001
    seek_to_committed: Callable[..., Coroutine[Any, Any, None]] = Consumer.perform_seek

    async def _add_gap(self: Consumer, tp: Any, offset_from: int, offset_to: int) -> None:
        on_gap = _guarded.get(tp.topic)
        if on_gap is None:
            await add_gap(self, tp, offset_from, offset_to)
            return
        log.critical(
            "records %d..%d of %s were lost inside the stream; restarting the worker to "
            "read them again from the last committed offset",
            offset_from, offset_to, tp,
        )  # fmt: skip
        on_gap()

    async def perform_seek(self: Consumer) -> None:
        # Faust resumes stream partitions just before it seeks them to the committed offsets
        # after a rebalance; a fetch in between returns records from the old position and
        # opens a gap. Keeping the guarded partitions paused during the seek narrows that race.
        guarded = {tp for tp in self.assignment() if tp.topic in _guarded}
        self.pause_partitions(guarded)
        try:
            await seek_to_committed(self)
        finally:
            self.resume_partitions(guarded)

    Consumer._add_gap = _add_gap  # type: ignore[method-assign]  # noqa: SLF001
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]
