"""A worker that loses request records on their way to the lanes, on purpose.

``migrator worker`` with one change: the lanes never take the first copy of every record whose
offset is ``E2E_DROP_OFFSET_MOD`` (``N:R``: offsets with offset % N == R), the way a record
vanishes between Kafka and the lanes around a rebalance. The record is skipped unacknowledged
(the consumer's read position has moved past it), and a line ``E2E dropped P:O`` goes to the
log. Later copies (the partition read again) pass. The hole guard must notice each hole inside
its batch and read the partition again from it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from streams import lanes
from streams.cli.main import main

_modulo, _, _rest = os.environ["E2E_DROP_OFFSET_MOD"].partition(":")
MODULO, REST = int(_modulo), int(_rest)
_dropped: set[tuple[int, int]] = set()
_put = lanes.Lane.put


def _survivors(messages: list[Any]) -> list[Any]:
    kept = []
    for message in messages:
        where = (message.partition, message.offset)
        if message.offset % MODULO == REST and where not in _dropped:
            _dropped.add(where)
            print(f"E2E dropped {where[0]}:{where[1]}", file=sys.stderr, flush=True)
            continue
        kept.append(message)
    return kept


def _dropping_put(self: Any, messages: list[Any]) -> None:
    _put(self, _survivors(messages))


lanes.Lane.put = _dropping_put  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(["worker", "-l", "info"]))
