"""The stream runner's handling of a batch, with a stand-in for the Kafka consumer: unreadable records
and records a processor rejects are dead-lettered whole with their origin and the partition moves on;
a database or broker outage rewinds the batch for as long as it lasts; a record that trips a bug is
retried alone and dead-lettered once its attempts are used up. (On the real broker: tests/e2e/
test_poison_records.py and the fault suite.)"""
from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from pymongo.errors import ServerSelectionTimeoutError

from shared import topics
from shared.stream import Batch, StreamMetrics, StreamRunner, as_record
from tests.unit.memory import SentRecords

TP = TopicPartition(topics.INGEST_MESSAGES, 0)


class Raw:
    def __init__(self, offset: int, value: bytes, key: bytes | None = b"k1") -> None:
        self.topic, self.partition, self.offset, self.key, self.value = TP.topic, 0, offset, key, value
        self.timestamp, self.headers = 1_700_000_000_000, ()


def good(offset: int, type_: str = "deskstream.message.received") -> Raw:
    return Raw(offset, orjson.dumps({"specversion": "1.0", "id": f"e{offset}", "source": "t", "type": type_,
                                     "time": "2026-11-23T10:00:00Z", "data": {"n": offset}}))


class Consumer:
    """What the runner asks of aiokafka's consumer."""

    def __init__(self) -> None:
        self.committed: dict[TopicPartition, int] = {}
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.paused: set[TopicPartition] = set()

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused -= set(tps)

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def position(self, tp: TopicPartition) -> int:
        return self.committed.get(tp, 0)


class Processor:
    def __init__(self, error: Exception | None = None, reject: set[int] = frozenset()) -> None:
        self.error, self.reject, self.seen, self.loads = error, reject, [], 0

    async def load(self, partitions: set[int]) -> None:
        self.loads += 1

    def install(self, partitions: set[int], loaded: Any) -> None:
        pass

    def revoke(self, partitions: set[int]) -> None:
        pass

    async def process(self, batch: Batch) -> None:
        if self.error is not None:
            raise self.error
        for record in batch.records:
            if record.offset in self.reject:
                batch.reject(record, "cannot apply it")
            else:
                self.seen.append(record.offset)


def runner(processor: Processor, **options: Any) -> tuple[StreamRunner, SentRecords, Consumer]:
    sent, consumer = SentRecords(), Consumer()
    r = StreamRunner(name="file", service="tickets", inputs=(TP.topic,), group_id="tickets", processor=processor,
                     bootstrap_servers="unused", producer=sent, metrics=StreamMetrics(None), retry_backoff_s=0,
                     **options)
    r.consumer, r.owned, r._committed = consumer, {0}, {TP: 0}  # noqa: SLF001 - as after an assignment
    return r, sent, consumer


def letters(sent: SentRecords) -> list[dict]:
    return [e["data"] for e in sent.events(topics.DEADLETTER)]


@pytest.mark.parametrize("value", [b"not json at all", b'{"specversion": "1.0"}', b"\xff\xfe", b"[" * 100_000,
                                   b'{"specversion":"2.0","id":"x","source":"s","type":"t"}',
                                   b'{"specversion":"1.0","id":"x","source":"s","type":"t","time":"yesterday"}'])
async def test_a_record_that_is_no_cloudevent_is_dead_lettered_whole_and_the_partition_moves_on(value):
    processor = Processor()
    r, sent, consumer = runner(processor)
    await r._handle({TP: [Raw(0, value), good(1)]})  # noqa: SLF001
    [letter] = letters(sent)
    assert base64.b64decode(letter["original_base64"]) == value and letter["reason"]
    assert (letter["source_topic"], letter["source_offset"], letter["source_key"]) == (TP.topic, 0, "k1")
    assert processor.seen == [1] and consumer.committed == {TP: 2}


async def test_a_record_the_processor_cannot_apply_is_dead_lettered_and_the_others_committed():
    processor = Processor(reject={1})
    r, sent, consumer = runner(processor)
    await r._handle({TP: [good(0), good(1), good(2)]})  # noqa: SLF001
    assert [x["source_offset"] for x in letters(sent)] == [1] and processor.seen == [0, 2]
    assert consumer.committed == {TP: 3}


async def test_an_unreachable_database_rewinds_the_batch_for_as_long_as_it_lasts():
    processor = Processor(error=ServerSelectionTimeoutError("no servers"))
    r, sent, consumer = runner(processor, max_attempts=1)
    for _ in range(3):
        await r._handle({TP: [good(0), good(1)]})  # noqa: SLF001
        r.owned.add(0)  # (the reload of its state, done by a task in the runner)
    assert consumer.committed == {} and letters(sent) == []
    assert consumer.seeks[-1] == (TP, 0)  # read again from the last commit


async def test_a_record_that_trips_a_bug_is_retried_alone_then_dead_lettered_once_its_attempts_are_used_up():
    processor = Processor(error=TypeError("'NoneType' object is not subscriptable"))
    r, sent, consumer = runner(processor, max_attempts=3)
    await r._handle({TP: [good(0), good(1)]})  # noqa: SLF001
    assert r._one_at_a_time == 2 and consumer.committed == {}  # noqa: SLF001 - now one record at a time
    for attempt in range(3):
        r.owned.add(0)
        await r._handle({TP: [good(0)]})  # noqa: SLF001
    [letter] = letters(sent)
    assert letter["reason"].startswith("failed 3 times: TypeError") and consumer.committed == {TP: 1}


async def test_records_of_a_partition_not_owned_yet_are_read_again_once_it_is():
    processor = Processor()
    r, sent, consumer = runner(processor)
    r.owned.clear()  # its state is still being loaded
    await r._handle({TP: [good(5), good(6)]})  # noqa: SLF001
    assert processor.seen == [] and consumer.seeks == [(TP, 5)] and consumer.committed == {}


def test_an_envelope_is_read_without_a_model_and_its_type_and_data_come_with_it():
    record = as_record(good(7, "deskstream.ticket.created"))
    assert record.type == "deskstream.ticket.created" and record.data == {"n": 7} and record.key == "k1"


class SlowProcessor(Processor):
    """A load that outlives the assignment it was for and shrugs off its cancellation (as a client
    library may), then tries to install what it read."""

    def __init__(self) -> None:
        super().__init__()
        self.installed: list[set[int]] = []
        self.gate = asyncio.Event()

    async def load(self, partitions: set[int]) -> None:
        while not self.gate.is_set():
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                continue  # swallowed

    def install(self, partitions: set[int], loaded: Any) -> None:
        self.installed.append(set(partitions))


async def test_a_load_overtaken_by_a_rebalance_installs_nothing_of_partitions_no_longer_ours():
    processor = SlowProcessor()
    r, _, consumer = runner(processor)
    r.owned, r._committed = set(), {}  # noqa: SLF001
    consumer.assignment = lambda: {TopicPartition(TP.topic, p) for p in (0, 1)}
    await r.assigned({TopicPartition(TP.topic, p) for p in (0, 1)})
    await asyncio.sleep(0)
    consumer.assignment = lambda: {TopicPartition(TP.topic, 0)}
    await r.assigned({TopicPartition(TP.topic, 0)})  # partition 1 went to another instance meanwhile
    processor.gate.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert processor.installed == [{0}] and r.owned == {0}
