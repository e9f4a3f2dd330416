"""A worker that loses request records inside its own stream, on purpose.

``migrator worker`` with one change: the lanes' reader never sees the first copy of every record
whose offset is ``E2E_DROP_OFFSET_MOD`` (``N:R``: offsets with offset % N == R), the way a record
vanishes inside Faust's stream around a rebalance. The record is acknowledged and skipped, and a
line ``E2E dropped P:O`` goes to the log. Later copies (the partition read again) pass. The hole
guard must notice each hole inside its batch and read the partition again from it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from streams import lanes
from streams.cli.main import main

_modulo, _, _rest = os.environ["E2E_DROP_OFFSET_MOD"].partition(":")
MODULO, REST = int(_modulo), int(_rest)
_dropped: set[tuple[int, int]] = set()
_read = lanes.Lanes._read


async def _dropping_read(self: Any, events: Any) -> None:
    async def survivors() -> AsyncIterator[Any]:
        async for event in events:
            message = event.message
            where = (message.partition, message.offset)
            if message.offset % MODULO == REST and where not in _dropped:
                _dropped.add(where)
                print(f"E2E dropped {where[0]}:{where[1]}", file=sys.stderr, flush=True)
                await self._stream.ack(event)
                continue
            yield event

    await _read(self, survivors())


lanes.Lanes._read = _dropping_read  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(["worker", "-l", "info"]))
