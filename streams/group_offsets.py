"""The consumer group's committed offsets of the request topic, through one admin client."""

from __future__ import annotations

import asyncio
from typing import Any

from streams import topics

CHECK_TIMEOUT_S = 3


class GroupOffsets:
    """The app id's committed offsets, read with one admin client kept for the worker's life
    (the worker's views and its answer audit share it: ``Resources.group_offsets``)."""

    def __init__(self, bootstrap_servers: list[str], group_id: str) -> None:
        self._bootstrap = bootstrap_servers
        self._group_id = group_id
        self._admin: Any = None
        self._starting = asyncio.Lock()
        self._closed = False

    async def committed(self) -> dict[int, int]:
        from aiokafka.admin import AIOKafkaAdminClient

        async with self._starting:  # two callers at once start one client, not two
            if self._closed:
                raise RuntimeError("the worker is stopping: no more group offsets")
            if self._admin is None:
                admin = AIOKafkaAdminClient(
                    bootstrap_servers=self._bootstrap, request_timeout_ms=CHECK_TIMEOUT_S * 1000
                )
                await asyncio.wait_for(admin.start(), timeout=CHECK_TIMEOUT_S + 1)
                self._admin = admin
            admin = self._admin
        try:
            found = await asyncio.wait_for(
                admin.list_consumer_group_offsets(self._group_id), timeout=CHECK_TIMEOUT_S
            )
        except BaseException:
            if self._admin is admin:  # the next call starts a new one
                self._admin = None
                await admin.close()
            raise
        return {
            tp.partition: meta.offset
            for tp, meta in found.items()
            if tp.topic == topics.REQUESTED and meta.offset >= 0
        }

    async def close(self) -> None:
        self._closed = True
        if self._admin is not None:
            admin, self._admin = self._admin, None
            await admin.close()
