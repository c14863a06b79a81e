"""State a stream processor owns, per partition: held in memory, made durable as a compacted
changelog topic (one record per changed key per batch, the latest value of each key kept by
Kafka), and read back from that topic when a partition is assigned — Kafka Streams' state stores,
without the local disk.

A processor changes values with `put`/`delete` while it decides a batch; `flush` sends the
batch's changes after the batch's events were acknowledged, so a value in the changelog never
runs ahead of the events it caused. Each flush ends with a marker per partition saying up to
which input offsets the values hold; a replay after a crash skips what the marker covers."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka import Outgoing, Producer

log = logging.getLogger(__name__)
V = TypeVar("V")
MARKER = "__applied__"  # the key of the per-partition marker: {topic: next input offset}


class ChangelogStore(Generic[V]):
    def __init__(self, topic: str, producer: Producer, bootstrap_servers: str, *,
                 encode: Callable[[str, V], Any] = lambda k, v: v,
                 decode: Callable[[str, Any], V] = lambda k, v: v) -> None:
        self.topic = topic
        self.producer = producer
        self.bootstrap_servers = bootstrap_servers
        self._encode, self._decode = encode, decode
        self.data: dict[int, dict[str, V]] = {}
        self.applied: dict[int, dict[str, int]] = {}  # partition -> input topic -> next offset the values hold
        self._dirty: dict[int, dict[str, V | None]] = {}

    # ------------------------------------------------------------ reading and changing
    def partition(self, p: int) -> dict[str, V]:
        return self.data.setdefault(p, {})

    def get(self, p: int, key: str) -> V | None:
        return self.data.get(p, {}).get(key)

    def put(self, p: int, key: str, value: V) -> None:
        self.data.setdefault(p, {})[key] = value
        self._dirty.setdefault(p, {})[key] = value

    def delete(self, p: int, key: str) -> None:
        if self.data.get(p, {}).pop(key, None) is not None:
            self._dirty.setdefault(p, {})[key] = None

    def touch(self, p: int, key: str) -> None:
        """The value under `key` was changed in place: send it with the next flush."""
        if (value := self.data.get(p, {}).get(key)) is not None:
            self._dirty.setdefault(p, {})[key] = value

    def mark(self, p: int, topic: str, next_offset: int) -> None:
        """The values of partition `p` now hold everything of `topic` before `next_offset`."""
        self.applied.setdefault(p, {})[topic] = next_offset
        self._dirty.setdefault(p, {})

    def covers(self, p: int, topic: str, offset: int) -> bool:
        """Was the input at `offset` applied to these values already (a replay after a crash)?"""
        return offset < self.applied.get(p, {}).get(topic, 0)

    def __len__(self) -> int:
        return sum(len(d) for d in self.data.values())

    # ------------------------------------------------------------ durability
    def changes(self) -> list[Outgoing]:
        """The records for everything changed since the last flush, each partition's marker last."""
        out: list[Outgoing] = []
        for p, changed in self._dirty.items():
            for key, value in changed.items():
                out.append(Outgoing(self.topic, key, None if value is None else orjson.dumps(self._encode(key, value)), p))
            if p in self.applied:
                out.append(Outgoing(self.topic, MARKER, orjson.dumps(self.applied[p]), p))
        self._dirty = {}
        return out

    async def flush(self) -> int:
        """Send the changes and wait until Kafka has them all."""
        records = self.changes()
        if records:
            await self.producer.send_many(records, headers=None)
        return len(records)

    def dirty(self) -> bool:
        return bool(self._dirty)

    # ------------------------------------------------------------ ownership
    async def read(self, partitions: Iterable[int]) -> dict[int, tuple[dict[str, V], dict[str, int]]]:
        """The values of these partitions as the changelog has them (all of it, up to its end now)."""
        tps = [TopicPartition(self.topic, p) for p in partitions]
        out: dict[int, tuple[dict[str, V], dict[str, int]]] = {tp.partition: ({}, {}) for tp in tps}
        if not tps:
            return out
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None,
                                    enable_auto_commit=False, client_id=f"restore-{self.topic}",
                                    auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024,
                                    fetch_max_wait_ms=50)
        await consumer.start()
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            starts = {tp: await consumer.position(tp) for tp in tps}  # resolved before the ends are asked
            ends = await consumer.end_offsets(tps)
            waiting = {tp for tp in tps if ends[tp] > starts[tp]}
            while waiting:
                fetched = await consumer.getmany(*waiting, timeout_ms=1000, max_records=5000)
                for tp, records in fetched.items():
                    values, applied = out[tp.partition]
                    for r in records:
                        if r.offset >= ends[tp]:
                            break
                        key = r.key.decode()
                        if key == MARKER:
                            applied.clear()
                            applied.update(orjson.loads(r.value))
                        elif r.value is None:
                            values.pop(key, None)
                        else:
                            values[key] = self._decode(key, orjson.loads(r.value))
                for tp in list(waiting):
                    if await consumer.position(tp) >= ends[tp]:
                        waiting.discard(tp)
        finally:
            await consumer.stop()
        return out

    def install(self, loaded: dict[int, tuple[dict[str, V], dict[str, int]]]) -> None:
        for p, (values, applied) in loaded.items():
            self.data[p] = values
            self.applied[p] = dict(applied)
            self._dirty.pop(p, None)

    def drop(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.data.pop(p, None)
            self.applied.pop(p, None)
            self._dirty.pop(p, None)


async def read_all(stores: Iterable[ChangelogStore[Any]], partitions: set[int]) -> list[Any]:
    return await asyncio.gather(*(s.read(partitions) for s in stores))
