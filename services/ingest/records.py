"""What ingest writes to Kafka: CloudEvents encoded once, to bytes, and its own idempotent producer.

FastStream's publisher re-validates, re-dumps and re-encodes every event and runs its
middlewares (Prometheus labels, correlation ids) per record: together ~0.2 ms of the ~1 ms a
chat message cost (py-spy, bench/ingest_alone.py). Ingest publishes on one hot path only, so it
encodes the record itself and hands the bytes to aiokafka directly. The guarantee is unchanged:
`acks="all"` with the idempotent producer, and a send counts only once its future resolved."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner, murmur2
from prometheus_client import CollectorRegistry, Histogram
from pydantic import TypeAdapter

from shared.kafka import MAX_REQUEST_BYTES

log = logging.getLogger(__name__)
CONTENT_TYPE = ("content-type", b"application/cloudevents+json")
_TIME = TypeAdapter(datetime)  # the envelope's time exactly as pydantic writes it in `make_event`'s events


def encode_event(type_: str, data: bytes, *, id_: str, source: str, subject: str | None, time_: datetime) -> bytes:
    """The structured-mode CloudEvent `make_event(...)` describes, with `data` already JSON: the
    payload was serialised once (by pydantic, in Rust) and is spliced in rather than parsed again."""
    return b"".join(
        (
            b'{"specversion":"1.0","id":',
            json.dumps(id_).encode(),
            b',"source":',
            json.dumps(source).encode(),
            b',"type":',
            json.dumps(type_).encode(),
            b',"subject":',
            json.dumps(subject).encode(),
            b',"time":',
            _TIME.dump_json(time_),
            b',"datacontenttype":"application/json","data":',
            data,
            b"}",
        )
    )


# aiokafka keeps one open batch per partition and, idempotent, one produce request in flight: a
# record finding its partition's batch full waits until that batch was sent and acknowledged. At
# the default 16 KiB (~30 chat records) a partition took ~30 records per broker round trip, so
# when acknowledgements slowed (a busy broker: 50-200 ms) ingest answered fewer than 1,000
# requests/s and the backlog grew without bound. Half a MiB stays under the broker's default
# 1 MB message.max.bytes (a larger single record is a batch of its own, as before).
BATCH_BYTES = 512 * 1024

_key_hash = functools.lru_cache(maxsize=65536)(murmur2)


class KeyPartitioner(DefaultPartitioner):
    """The default partitioner (Java's murmur2, so a key lands where any Kafka client puts it),
    remembering each key's hash: aiokafka computes it in pure Python, ~7 µs a record, and a
    conversation's records share their key."""

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return super().__call__(key, all_partitions, available)
        return all_partitions[(_key_hash(key) & 0x7FFFFFFF) % len(all_partitions)]


class RecordSink(Protocol):
    async def publish(self, value: bytes, key: bytes, headers: Sequence[tuple[str, bytes]]) -> None:
        """Returns once Kafka acknowledged the record (acks=all); raises otherwise."""


class KafkaRecords:
    """Ingest's producer for one topic. Concurrent requests' records share produce requests:
    aiokafka batches whatever is queued while the previous request to the broker is in flight."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        client_id: str,
        linger_ms: int = 1,
        stall_s: float = 3.0,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bootstrap_servers, self.topic = bootstrap_servers, topic
        self.client_id, self.linger_ms = client_id, linger_ms
        self.stall_s, self.clock = stall_s, clock
        self._producer: AIOKafkaProducer | None = None
        self.started = False
        self.refusing = False
        self._waiting: dict[int, float] = {}  # records awaiting their acknowledgement → when, oldest first
        self._acked_at = 0.0  # when the broker last acknowledged one
        self._numbers = itertools.count()
        self._seconds = Histogram(
            "deskstream_ingest_publish_seconds",
            "from handing a record to the producer to Kafka's acknowledgement",
            ["outcome"],
            registry=registry,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2, 10),
        )
        self._acked = self._seconds.labels("acked")
        self._failed = self._seconds.labels("failed")

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,  # what makes a 202 mean durable: never relax these
            linger_ms=self.linger_ms,
            max_request_size=MAX_REQUEST_BYTES,
            partitioner=KeyPartitioner(),
            max_batch_size=BATCH_BYTES,
        )

    async def start(self) -> None:
        """Idempotent, so the runtime's connect loop may call it again after a later step failed.
        A producer whose bootstrap failed is discarded: the next attempt builds a fresh one."""
        if self.started:
            return
        producer = self._new_producer()
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer, self.started = producer, True

    async def stop(self) -> None:
        self.started = False
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    def stalled_for(self) -> float:
        """How long records have waited for an acknowledgement without the broker acknowledging any
        (0: none waits). Progress counts, not the oldest record: one record held up on a partition
        whose leader moved does not stop new messages while the broker acknowledges others."""
        for since in self._waiting.values():
            return self.clock() - max(since, self._acked_at)
        return 0.0

    async def publish(self, value: bytes, key: bytes, headers: Sequence[tuple[str, bytes]]) -> None:
        producer = self._producer
        if producer is None:
            raise ConnectionError("the Kafka producer is not started")
        # The broker is away (or far behind): a new record would only join those held, and the
        # request wait with them until the broker is back, then all be sent at once while the
        # consumers catch up. Refused now, its sender retries after Retry-After; once the broker
        # acknowledges the held records again, new ones are taken.
        stalled = self.stalled_for()
        if self.stall_s and stalled > self.stall_s:
            if not self.refusing:
                self.refusing = True
                log.warning("refusing new messages (503): the broker has acknowledged no record for %.1f s", stalled)
            raise ConnectionError(f"the broker has acknowledged no record for {stalled:.1f} s")
        if self.refusing:
            self.refusing = False
            log.warning("taking new messages again: the broker acknowledges")
        number = next(self._numbers)
        self._waiting[number] = self.clock()
        start = time.perf_counter()
        try:
            # send() only queues the record; awaiting its future waits for the acknowledgement
            delivered = await producer.send(self.topic, value=value, key=key, headers=list(headers))
            await delivered
        except BaseException:
            self._failed.observe(time.perf_counter() - start)
            raise
        finally:
            del self._waiting[number]
        self._acked_at = self.clock()
        self._acked.observe(time.perf_counter() - start)
