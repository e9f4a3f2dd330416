"""The consumer group's committed offsets of the request topic, through one admin client."""

from __future__ import annotations

import asyncio
from typing import Any

from streams import topics

CHECK_TIMEOUT_S = 3


class GroupOffsets:
    """The app id's committed offsets, read with one admin client kept for the worker's life."""

    def __init__(self, bootstrap_servers: list[str], group_id: str) -> None:
        self._bootstrap = bootstrap_servers
        self._group_id = group_id
        self._admin: Any = None

    async def committed(self) -> dict[int, int]:
        from aiokafka.admin import AIOKafkaAdminClient

        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap, request_timeout_ms=CHECK_TIMEOUT_S * 1000
            )
            await asyncio.wait_for(admin.start(), timeout=CHECK_TIMEOUT_S + 1)
            self._admin = admin
        try:
            found = await asyncio.wait_for(
                self._admin.list_consumer_group_offsets(self._group_id), timeout=CHECK_TIMEOUT_S
            )
        except BaseException:
            admin, self._admin = self._admin, None
            await admin.close()
            raise
        return {
            tp.partition: meta.offset
            for tp, meta in found.items()
            if tp.topic == topics.REQUESTED and meta.offset >= 0
        }

    async def close(self) -> None:
        if self._admin is not None:
            admin, self._admin = self._admin, None
            await admin.close()
