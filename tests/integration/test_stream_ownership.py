"""Partition-owned state on the real broker: a changelog is read back as it was written (latest value
per key, deletions, the input offsets it holds); two processes of one group split the partitions and,
when one stops, the other takes its partitions over with their state and carries on from the last
commit — nothing applied twice, nothing lost."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.kafka import CHANGELOG_CONFIG, Outgoing, Producer
from shared.state import ChangelogStore
from shared.stream import Batch, StreamMetrics, StreamRunner

pytestmark = pytest.mark.integration
PARTITIONS = 4


async def topics_of_our_own(bootstrap: str, *names: str, compacted: tuple[str, ...] = ()) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1, topic_configs=CHANGELOG_CONFIG if n in compacted else {})
                                   for n in names])
    finally:
        await admin.close()


@pytest.fixture
async def producer(infra):
    p = Producer(infra.kafka_bootstrap, client_id="it")
    await p.start()
    yield p
    await p.stop()


async def test_a_changelog_reads_back_the_latest_value_of_each_key_and_the_offsets_it_holds(infra, producer):
    topic = f"it-changelog-{uuid.uuid4().hex[:8]}"
    await topics_of_our_own(infra.kafka_bootstrap, topic, compacted=(topic,))
    store: ChangelogStore[dict] = ChangelogStore(topic, producer, infra.kafka_bootstrap)
    store.put(1, "a", {"n": 1})
    store.put(1, "b", {"n": 1})
    store.mark(1, "input", 10)
    await store.flush()
    store.put(1, "a", {"n": 2})
    store.delete(1, "b")
    store.put(2, "c", {"n": 3})
    store.mark(1, "input", 12)
    await store.flush()
    back = await store.read({1, 2, 3})
    assert back[1] == ({"a": {"n": 2}}, {"input": 12})
    assert back[2] == ({"c": {"n": 3}}, {}) and back[3] == ({}, {})
    fresh: ChangelogStore[dict] = ChangelogStore(topic, producer, infra.kafka_bootstrap)
    fresh.install(back)
    assert fresh.covers(1, "input", 11) and not fresh.covers(1, "input", 12)


class Counter:
    """A processor counting the records of each key, its counts partition-owned state in a changelog."""

    def __init__(self, topic: str, producer: Producer, bootstrap: str) -> None:
        self.state: ChangelogStore[int] = ChangelogStore(topic, producer, bootstrap)
        self.loaded: list[set[int]] = []

    async def load(self, partitions: set[int]) -> Any:
        return await self.state.read(partitions)

    def install(self, partitions: set[int], loaded: Any) -> None:
        self.state.install(loaded)
        self.loaded.append(set(partitions))

    def revoke(self, partitions: set[int]) -> None:
        self.state.drop(partitions)

    async def process(self, batch: Batch) -> None:
        for r in batch.records:
            if self.state.covers(r.partition, r.topic, r.offset):
                continue
            self.state.put(r.partition, r.key, (self.state.get(r.partition, r.key) or 0) + 1)
            self.state.mark(r.partition, r.topic, r.offset + 1)
        await self.state.flush()

    def counts(self) -> dict[str, int]:
        return {k: v for part in self.state.data.values() for k, v in part.items()}


async def test_two_processes_split_the_partitions_and_one_takes_over_the_others_state(infra, producer):
    run = uuid.uuid4().hex[:8]
    source, changelog, group = f"it-input-{run}", f"it-state-{run}", f"it-group-{run}"
    await topics_of_our_own(infra.kafka_bootstrap, source, changelog, compacted=(changelog,))
    keys = [f"k{i}" for i in range(40)]

    async def send(rounds: int) -> None:
        raw = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
        await raw.start()
        try:
            for _ in range(rounds):
                for key in keys:
                    value = f'{{"specversion":"1.0","id":"{uuid.uuid4().hex}","source":"it","type":"count"}}'
                    await raw.send(source, value.encode(), key=key.encode())
            await raw.flush()
        finally:
            await raw.stop()

    def member(name: str) -> tuple[StreamRunner, Counter]:
        counter = Counter(changelog, producer, infra.kafka_bootstrap)
        runner = StreamRunner(name=name, service="it", inputs=(source,), group_id=group, processor=counter,
                              bootstrap_servers=infra.kafka_bootstrap, producer=producer,
                              metrics=StreamMetrics(None), max_records=7)
        return runner, counter

    first, first_counts = member("a")
    second, second_counts = member("b")
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]

    async def until(check, timeout: float = 60.0) -> None:
        for _ in range(int(timeout / 0.2)):
            if check():
                return
            await asyncio.sleep(0.2)
        raise AssertionError("did not happen in time")

    try:
        await until(lambda: first.owned and second.owned and not first.owned & second.owned
                    and len(first.owned | second.owned) == PARTITIONS)
        await send(3)
        await until(lambda: sum(first_counts.counts().values()) + sum(second_counts.counts().values()) == 120)
        tasks[1].cancel()  # the second process stops: the first takes its partitions with their counts
        await asyncio.gather(tasks[1], return_exceptions=True)
        await until(lambda: first.owned == set(range(PARTITIONS)), timeout=60)
        await send(2)
        await until(lambda: sum(first_counts.counts().values()) == 200)
        assert first_counts.counts() == dict.fromkeys(keys, 5)  # every record counted once, none lost
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
