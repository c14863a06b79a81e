"""`make redrive` with a filter, on the real broker: the dead letters it leaves out are still there
for the next run, and none is re-driven twice."""
from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaProducer

from deploy.redrive import redrive
from shared import topics
from shared.stream import dead_letter
from tests.e2e.helpers import read_topic, run

pytestmark = pytest.mark.e2e


async def dead_letters(bootstrap: str, letters: list[tuple[str, bytes]], key: str) -> None:
    """Dead letters as the services write them, one key for all: one partition, in this order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for offset, (source, value) in enumerate(letters):
            raw = SimpleNamespace(topic=source, partition=0, offset=offset, key=key.encode(), value=value)
            out = dead_letter("e2e", raw, "a cause that has been fixed since")
            await producer.send_and_wait(out.topic, out.value, key=key.encode())
    finally:
        await producer.stop()


def values(stack, topic: str, count: int) -> list[bytes]:
    """What reached `topic`: the originals are not JSON, so read_topic keeps their bytes as `_raw`."""
    records = run(read_topic(stack.kafka_bootstrap, topic, until=lambda rs: len(rs) >= count, timeout=20))
    return [r["_raw"] for r in records]


def test_dead_letters_a_filter_left_out_are_redriven_by_a_later_run(stack):
    run_id = uuid.uuid4().hex[:10]
    first, second = f"e2e.redrive.first.{run_id}", f"e2e.redrive.second.{run_id}"
    # interleaved in one partition: the first run must leave the second's letters between its own
    letters = [(first, b"first-1"), (second, b"second-1"), (first, b"first-2"), (second, b"second-2")]
    run(dead_letters(stack.kafka_bootstrap, letters, key=f"redrive-{run_id}"))
    assert run(read_topic(stack.kafka_bootstrap, topics.DEADLETTER, until=lambda rs: sum(
        r.get("data", {}).get("source_topic") == second for r in rs) == 2))

    sent, _ = run(redrive(stack.kafka_bootstrap, topic=first, service=None, dry_run=False, idle_s=2))
    assert sent == 2 and values(stack, first, 2) == [b"first-1", b"first-2"]

    sent, _ = run(redrive(stack.kafka_bootstrap, topic=second, service=None, dry_run=False, idle_s=2))
    assert sent == 2, "the dead letters the first run filtered out were lost"
    assert values(stack, second, 2) == [b"second-1", b"second-2"]

    # each once: another run for either topic finds nothing left of these
    assert run(redrive(stack.kafka_bootstrap, topic=first, service=None, dry_run=True, idle_s=2))[0] == 0
    assert run(redrive(stack.kafka_bootstrap, topic=second, service=None, dry_run=True, idle_s=2))[0] == 0
