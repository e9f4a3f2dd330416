"""Reading chosen offset ranges of chosen partitions as a read_committed consumer with no group.

The hole guard asks it whether offsets hold records, the worker's answer audit and
``migrator audit`` read the request and answer topics through it. No group: it commits nothing
and takes no part in any rebalance.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.connections import start_kafka_client, stop_kafka_client
from streams.faust_internals import refresh_metadata

# Records per fetch answer per partition: about 1 MiB of requests.
_FETCH_RECORDS = 2000
_POLL_MS = 200


class PartitionReader:
    """A started consumer reading ``[start, end)`` of one partition at a time."""

    def __init__(self, bootstrap_servers: Sequence[str], *, request_timeout_s: float = 10) -> None:
        self._bootstrap = list(bootstrap_servers)
        self._request_timeout_ms = int(request_timeout_s * 1000)
        self._client: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        assert self._client is not None, "PartitionReader.start() first"
        return self._client

    async def start(self) -> None:
        """Start the consumer (made here, not before: one made and never started is a
        warning at exit). A reader whose consumer failed is started afresh next time."""
        if self._client is None:
            client = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                isolation_level="read_committed",
                enable_auto_commit=False,
                group_id=None,
                request_timeout_ms=self._request_timeout_ms,
                fetch_max_wait_ms=100,
                # Offsets retention deleted: read on from the oldest kept, never jump to the end.
                auto_offset_reset="earliest",
            )
            await start_kafka_client(client)
            self._client = client

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await stop_kafka_client(client)

    async def partitions(self, topic: str) -> list[int]:
        """The topic's partitions (none if it does not exist)."""
        await self.start()
        await refresh_metadata(self._consumer)
        return sorted(self._consumer.partitions_for_topic(topic) or ())

    async def ends(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """Each partition's last stable offset: everything below it is committed or aborted."""
        await self.start()
        tps = [TopicPartition(topic, p) for p in partitions]
        found = await self._consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in found.items()}

    async def beginnings(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        await self.start()
        tps = [TopicPartition(topic, p) for p in partitions]
        found = await self._consumer.beginning_offsets(tps)
        return {tp.partition: offset for tp, offset in found.items()}

    async def offsets_since(
        self, topic: str, partitions: Sequence[int], timestamp_ms: int
    ) -> dict[int, int]:
        """Each partition's first offset whose record is at or after ``timestamp_ms``; when there
        is none yet, its end as read *before* the lookup. A transaction that commits between the
        two reads puts its records at or past that end; an end read after the lookup would
        pass over them (the answer audit began past answers committed while it looked, and
        reported their requests unanswered)."""
        await self.start()
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = await self.ends(topic, partitions)
        found = await self._consumer.offsets_for_times(dict.fromkeys(tps, timestamp_ms))
        return {
            tp.partition: ends[tp.partition]
            if meta is None
            else min(meta.offset, ends[tp.partition])
            for tp, meta in found.items()
        }

    async def first_fetch(
        self, topic: str, partition: int, start: int, timeout_s: float
    ) -> tuple[list[int], int]:
        """The offsets of the records one fetch from ``start`` returns, and the position after
        them: every offset from ``start`` to that position not in the list holds no record a
        read_committed consumer is given. Empty and ``start`` when nothing came in time."""
        async with self._lock:
            await self.start()
            tp = TopicPartition(topic, partition)
            self._consumer.assign([tp])
            self._consumer.seek(tp, start)
            found = await self._consumer.getmany(
                tp, timeout_ms=int(timeout_s * 1000), max_records=_FETCH_RECORDS
            )
            records = found.get(tp, [])
            if not records:
                return [], start
            return [r.offset for r in records], records[-1].offset + 1

    async def first_record(
        self, topic: str, partition: int, start: int, end: int, timeout_s: float
    ) -> int | None:
        """The offset of the first record in ``[start, end)`` a read_committed consumer is
        given; None when the range holds none (only transaction markers, aborted or compacted
        records). ``end`` must not be past the last stable offset. ``TimeoutError`` when the
        fetches did not get to ``end`` in ``timeout_s`` (Kafka away): never taken for "none"."""
        async with self._lock:
            await self.start()
            tp = TopicPartition(topic, partition)
            self._consumer.assign([tp])
            self._consumer.seek(tp, start)
            deadline = asyncio.get_running_loop().time() + timeout_s
            while True:
                found = await self._consumer.getmany(tp, timeout_ms=_POLL_MS, max_records=1)
                records = found.get(tp, [])
                if records:
                    return records[0].offset if records[0].offset < end else None
                if await self._consumer.position(tp) >= end:
                    return None
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(
                        f"{topic}[{partition}]: offsets {start}..{end - 1} not read "
                        f"in {timeout_s:g} s"
                    )

    async def read(
        self, topic: str, partition: int, start: int, end: int, *, idle_timeout_s: float = 5.0
    ) -> AsyncIterator[list[Any]]:
        """The records of ``[start, end)``, a fetch at a time, in offset order. ``end`` must not
        be past the last stable offset; a fetch that brings nothing for ``idle_timeout_s``
        raises ``TimeoutError`` (Kafka away), so a caller never takes a silence for the end."""
        if start >= end:
            return
        async with self._lock:
            await self.start()
            tp = TopicPartition(topic, partition)
            self._consumer.assign([tp])
            self._consumer.seek(tp, start)
            loop = asyncio.get_running_loop()
            position, moved = start, loop.time()
            while True:
                # Short fetches: a range that ends in transaction markers yields no record for
                # its last offsets, only a position that moves past them.
                found = await self._consumer.getmany(
                    tp, timeout_ms=_POLL_MS, max_records=_FETCH_RECORDS
                )
                records = [r for r in found.get(tp, []) if r.offset < end]
                if records:
                    yield records
                now = await self._consumer.position(tp)
                if now >= end:
                    return
                if now != position:
                    position, moved = now, loop.time()
                elif loop.time() - moved > idle_timeout_s:
                    raise TimeoutError(
                        f"{topic}[{partition}]: nothing read from offset {position} "
                        f"in {idle_timeout_s:g} s (end {end})"
                    )
