"""State a stream processor owns, per partition: held in memory, made durable as a compacted
changelog topic (one record per changed key per batch, the latest value of each key kept by
Kafka), and read back from that topic when a partition is assigned — Kafka Streams' state stores,
without the local disk.

A processor changes values with `put`/`delete` while it decides a batch; `flush` sends the
batch's changes after the batch's events were acknowledged, so a value in the changelog never
runs ahead of the events it caused. Each flush ends with a marker per partition saying up to
which input offsets the values hold; a replay after a crash skips what the marker covers.

Memory: with `hot=n`, at most n values (of the keys `coldable` accepts) are held decoded; the
others are held as the changelog has them (JSON bytes, ~8x smaller than the decoded objects) and
decoded again when asked for. A restore reads them without decoding them at all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar, final

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka import Outgoing, Producer

log = logging.getLogger(__name__)
V = TypeVar("V")
MARKER = "__applied__"  # the key of the per-partition marker: {topic: next input offset}


def compact(raw: bytes) -> bytes:
    """`raw` in a bytes object of its own size. orjson (3.13) returns its output in the buffer it wrote
    it in, several KB however short the JSON: held for every ticket, that is ~8 KB of memory for a
    ~0.8 KB value (tests/unit/test_state.py)."""
    return bytes(memoryview(raw))


@final  # so that `type(value) is Encoded` narrows both ways for the type checker
class Encoded:
    """A value held as the changelog has it, not decoded yet."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw


class ChangelogStore(Generic[V]):
    def __init__(
        self,
        topic: str,
        producer: Producer,
        bootstrap_servers: str,
        *,
        encode: Callable[[str, V], Any] = lambda k, v: v,
        decode: Callable[[str, Any], V] = lambda k, v: v,
        hot: int | None = None,
        coldable: Callable[[str], bool] = lambda key: True,
    ) -> None:
        self.topic = topic
        self.producer = producer
        self.bootstrap_servers = bootstrap_servers
        self._encode, self._decode = encode, decode
        self.hot, self._coldable = hot, coldable
        self.data: dict[int, dict[str, V | Encoded]] = {}
        self.applied: dict[int, dict[str, int]] = {}  # partition -> input topic -> next offset the values hold
        self._dirty: dict[int, dict[str, V | None]] = {}
        self._recent: dict[tuple[int, str], None] = {}  # the decoded coldable values, least recently used first

    # ------------------------------------------------------------ reading and changing
    def partition(self, p: int) -> dict[str, V]:
        """Every value of partition `p`, decoded (a store without `hot` only)."""
        assert self.hot is None, "a store with encoded values is read with get()"
        return self.data.setdefault(p, {})  # type: ignore[return-value]  # without `hot`: all decoded

    def partitions(self) -> list[int]:
        return list(self.data)

    def keys(self, p: int) -> list[str]:
        return list(self.data.get(p, ()))

    def __contains__(self, where: tuple[int, str]) -> bool:
        p, key = where
        return key in self.data.get(p, ())

    def get(self, p: int, key: str) -> V | None:
        values = self.data.get(p)
        if values is None:
            return None
        value = values.get(key)
        if value is None or self.hot is None:
            return value  # type: ignore[return-value]  # without `hot` none is held encoded
        if type(value) is Encoded:
            value = values[key] = self._decode(key, orjson.loads(value.raw))
        elif not self._coldable(key):
            return value
        self._recent.pop((p, key), None)
        self._recent[(p, key)] = None
        return value

    def raw(self, p: int, key: str) -> Any:
        """The value as JSON data, without keeping it decoded (for a glance over many values)."""
        value = self.data.get(p, {}).get(key)
        if type(value) is Encoded:
            return orjson.loads(value.raw)
        return None if value is None else self._encode(key, value)

    def put(self, p: int, key: str, value: V) -> None:
        self.data.setdefault(p, {})[key] = value
        self._dirty.setdefault(p, {})[key] = value
        if self.hot is not None and self._coldable(key):
            self._recent.pop((p, key), None)
            self._recent[(p, key)] = None

    def delete(self, p: int, key: str) -> None:
        if self.data.get(p, {}).pop(key, None) is not None:
            self._dirty.setdefault(p, {})[key] = None
        self._recent.pop((p, key), None)

    def touch(self, p: int, key: str) -> None:
        """The value under `key` was changed in place: send it with the next flush."""
        if (value := self.data.get(p, {}).get(key)) is not None and type(value) is not Encoded:
            self._dirty.setdefault(p, {})[key] = value

    def pending(self, p: int, key: str) -> bool:
        """Was the value under `key` changed since the last flush?"""
        return key in self._dirty.get(p, ())

    def decoded(self) -> int:
        return len(self._recent)

    def _cool(self, encoded: dict[tuple[int, str], bytes]) -> None:
        """Hold the least recently used values encoded again, down to `hot` decoded ones."""
        if self.hot is None:
            return
        while len(self._recent) > self.hot:
            p, key = where = next(iter(self._recent))
            del self._recent[where]
            values = self.data.get(p)
            if values is None or (value := values.get(key)) is None or type(value) is Encoded:
                continue
            if key in self._dirty.get(p, ()):  # changed since the last flush: it stays as it is
                self._recent[where] = None
                break
            raw = encoded.get(where)
            values[key] = Encoded(compact(raw if raw is not None else orjson.dumps(self._encode(key, value))))

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
        encoded: dict[tuple[int, str], bytes] = {}
        for p, changed in self._dirty.items():
            for key, value in changed.items():
                raw = None if value is None else orjson.dumps(self._encode(key, value))
                out.append(Outgoing(self.topic, key, raw, p))
                if raw is not None and self.hot is not None:
                    encoded[(p, key)] = raw
            if p in self.applied:
                out.append(Outgoing(self.topic, MARKER, orjson.dumps(self.applied[p]), p))
        self._dirty = {}
        self._cool(encoded)
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
    async def read(self, partitions: Iterable[int]) -> dict[int, tuple[dict[str, V | Encoded], dict[str, int]]]:
        """The values of these partitions as the changelog has them (all of it, up to its end now);
        with `hot`, coldable values stay encoded."""
        tps = [TopicPartition(self.topic, p) for p in partitions]
        out: dict[int, tuple[dict[str, V | Encoded], dict[str, int]]] = {tp.partition: ({}, {}) for tp in tps}
        if not tps:
            return out
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            client_id=f"restore-{self.topic}",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_wait_ms=50,
        )
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
                        self.replay(values, applied, r.key.decode(), r.value)
                for tp in list(waiting):
                    if await consumer.position(tp) >= ends[tp]:
                        waiting.discard(tp)
        finally:
            await consumer.stop()
        return out

    def replay(self, values: dict[str, V | Encoded], applied: dict[str, int], key: str, raw: bytes | None) -> None:
        """One changelog record, read back."""
        if key == MARKER:
            applied.clear()
            applied.update(orjson.loads(raw or b"{}"))
        elif raw is None:
            values.pop(key, None)
        else:
            values.pop(key, None)  # re-inserted: the values keep the order they last changed in
            if self.hot is not None and self._coldable(key):
                values[key] = Encoded(raw)
            else:
                values[key] = self._decode(key, orjson.loads(raw))

    def install(self, loaded: dict[int, tuple[dict[str, V | Encoded], dict[str, int]]]) -> None:
        for p, (values, applied) in loaded.items():
            self.drop([p])
            self.data[p] = values
            self.applied[p] = dict(applied)

    def drop(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        for p in gone:
            self.data.pop(p, None)
            self.applied.pop(p, None)
            self._dirty.pop(p, None)
        if gone and self._recent:
            self._recent = {where: None for where in self._recent if where[0] not in gone}


async def read_all(stores: Iterable[ChangelogStore[Any]], partitions: set[int]) -> list[Any]:
    return await asyncio.gather(*(s.read(partitions) for s in stores))
