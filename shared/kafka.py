"""Kafka for the hot path: one idempotent producer per process that sends a batch of records and
waits for all of their acknowledgements together, CloudEvents encoded straight to bytes, and the
topics deskstream needs (with the settings each one wants)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import murmur2
from pydantic import BaseModel

from shared import topics

log = logging.getLogger(__name__)

CLOUDEVENTS_JSON = [("content-type", b"application/cloudevents+json")]
DEFAULT_PARTITIONS = 6
# a dead letter carries the whole record (base64) beside its text, so it is larger than the record:
# the deadletter topic takes records up to this size, and so may our producers send them
DEADLETTER_MAX_BYTES = 4 * 1024 * 1024
MAX_REQUEST_BYTES = DEADLETTER_MAX_BYTES + 64 * 1024


class Outgoing(NamedTuple):
    """One record to send. `partition` None: Kafka's default partitioner picks it from the key.
    `type`: the CloudEvent's type, also sent as the `ce_type` header, so a reader that wants a few
    types skips the others without parsing them."""

    topic: str
    key: str | None
    value: bytes | None  # None: a tombstone (compacted topics)
    partition: int | None = None
    type: str | None = None


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's and aiokafka's alike) gives `key`."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def iso(at: datetime) -> str:
    """A UTC time as pydantic writes it in JSON (`...Z`), so every record reads the same."""
    text = at.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def event(
    topic: str,
    key: str | None,
    type_: str,
    data: BaseModel | dict[str, Any],
    *,
    source: str,
    subject: str | None,
    id_: str,
    time: datetime,
    partition: int | None = None,
) -> Outgoing:
    """A CloudEvent record ready to send."""
    return Outgoing(
        topic, key, encode_event(type_, data, source=source, subject=subject, id_=id_, time=time), partition, type_
    )


def encode_event(
    type_: str, data: BaseModel | dict[str, Any], *, source: str, subject: str | None, id_: str, time: datetime
) -> bytes:
    """A CloudEvents 1.0 record in structured JSON mode, written without building a model of the
    envelope: the payload is serialised by pydantic (Rust), the envelope around it by orjson."""
    payload = data.model_dump_json().encode() if isinstance(data, BaseModel) else orjson.dumps(data)
    head = orjson.dumps(
        {
            "specversion": "1.0",
            "id": id_,
            "source": source,
            "type": type_,
            "subject": subject,
            "time": iso(time),
            "datacontenttype": "application/json",
        }
    )
    return head[:-1] + b',"data":' + payload + b"}"


def decode(value: bytes | None) -> Any:
    """JSON of a record; raises ValueError on anything else (orjson refuses nesting past 1024 levels)."""
    if value is None:
        raise ValueError("the record has no value")
    return orjson.loads(value)


class Producer:
    """acks=all with an idempotent producer: a send that was awaited is durable. `send_many`
    hands every record to the client first and then waits for the acknowledgements together, so
    a batch costs one round of produce requests, not one per record."""

    def __init__(self, bootstrap_servers: str, *, client_id: str, linger_ms: int = 2) -> None:
        self._options = dict(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            max_request_size=MAX_REQUEST_BYTES,
            max_batch_size=256 * 1024,
        )
        self._producer: AIOKafkaProducer | None = None  # made in `start`: aiokafka wants a running loop
        self.started = False

    async def start(self) -> None:
        if self._producer is None:
            self._producer = AIOKafkaProducer(**self._options)
        try:
            await self._producer.start()
        except Exception:
            await self._producer.stop()
            self._producer = None
            raise
        self.started = True

    async def stop(self) -> None:
        if self._producer is not None:
            self.started = False
            await self._producer.stop()
            self._producer = None

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: str | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        await self.send_many([Outgoing(topic, key, value, partition)], headers=headers)

    async def send_many(
        self, records: Iterable[Outgoing], *, headers: list[tuple[str, bytes]] | None = CLOUDEVENTS_JSON
    ) -> int:
        if self._producer is None:
            raise KafkaConnectionError("the producer is not connected")
        futures = []
        for r in records:
            extra = headers
            if r.type is not None and headers is not None:
                extra = [*headers, ("ce_type", r.type.encode())]
            futures.append(
                await self._producer.send(
                    r.topic,
                    r.value,
                    key=r.key.encode() if r.key is not None else None,
                    partition=r.partition,
                    headers=extra if r.value is not None else None,
                )
            )
        if futures:
            await asyncio.gather(*futures)
        return len(futures)

    async def ping(self, timeout: float = 2.0) -> bool:
        """Does the cluster answer (a metadata request)?"""
        if self._producer is None:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout)
            return True
        except Exception:  # any failure means "not healthy", reported by /healthz
            return False

    async def partitions_for(self, topic: str) -> int:
        if self._producer is None:
            raise KafkaConnectionError("the producer is not connected")
        return len(await self._producer.partitions_for(topic))


# compacted changelogs of the state stores (shared/state.py): the latest value per key is kept;
# small segments so that compaction keeps the restore short
CHANGELOG_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": str(10 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.2",
    "delete.retention.ms": str(60 * 60 * 1000),
}
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    topics.DEADLETTER: {"max.message.bytes": str(DEADLETTER_MAX_BYTES)},
    **dict.fromkeys(topics.CHANGELOGS, CHANGELOG_CONFIG),
    topics.TICKETS_NOTICES: {"retention.ms": str(60 * 60 * 1000)},  # read from its end by running processes
}
TOPIC_PARTITIONS = dict.fromkeys(topics.SINGLE_PARTITION, 1)


async def ensure_topics(
    bootstrap_servers: str, names: tuple[str, ...] = topics.ALL, partitions: int = DEFAULT_PARTITIONS
) -> None:
    """Create the topics deskstream needs if they are missing (existing ones keep their partitions)
    and give existing ones the settings they need."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="deskstream-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=n,
                num_partitions=TOPIC_PARTITIONS.get(n, partitions),
                replication_factor=1,
                topic_configs=TOPIC_CONFIGS.get(n, {}),
            )
            for n in names
            if n not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except Exception as exc:  # another service created them first
                if "TopicAlreadyExists" not in type(exc).__name__ + str(exc):
                    raise
        configs = [
            ConfigResource(ConfigResourceType.TOPIC, n, configs=TOPIC_CONFIGS[n])
            for n in names
            if n in existing and n in TOPIC_CONFIGS
        ]
        if configs:
            await admin.alter_configs(configs)
    finally:
        await admin.close()
