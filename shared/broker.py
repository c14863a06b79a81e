"""The Kafka broker every service uses: durable publishing, at-least-once consuming,
dead-lettering of records that can never be processed, and Prometheus metrics."""
from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from faststream import AckPolicy, BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure

from shared import topics
from shared.events import DeadLetter, EventType, make_event, utcnow
from shared.telemetry import Telemetry

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 6
# a dead letter carries the whole record (base64) beside its text, so it is larger than the record:
# the deadletter topic takes records up to this size, and so may our producer send them
DEADLETTER_MAX_BYTES = 4 * 1024 * 1024
MAX_REQUEST_BYTES = DEADLETTER_MAX_BYTES + 64 * 1024

# trouble that passes (the database or the broker away, a network timeout): retried for as long as
# it lasts. Anything else a handler raises is retried a few times, then the record is dead-lettered,
# so a record that trips a bug never holds its partition up for good.
TRANSIENT = (ConnectionFailure, KafkaError, OSError, TimeoutError)


class PoisonMessage(Exception):
    """Raised by a handler for a record that is well-formed but can never be applied
    (for example a command for a ticket that does not exist). It is dead-lettered, not retried."""


def at_least_once(group_id: str) -> dict[str, Any]:
    """Subscriber options: an explicit group, offsets committed only after the handler
    succeeded, and a rewind (redelivery) when it raised."""
    return {
        "group_id": group_id,
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": "earliest",
    }


def broadcast() -> dict[str, Any]:
    """Subscriber options for a fan-out to every instance (live pushes to connected clients):
    no consumer group, so each instance reads every partition, from the newest record, and
    commits nothing; what an instance missed while down is served from the database."""
    return {"group_id": None, "auto_offset_reset": "latest", "ack_policy": AckPolicy.MANUAL}


async def decode_json(msg: Any) -> Any:
    """Every record is JSON (CloudEvents structured mode, `application/cloudevents+json`),
    whatever its content-type header says; a body that is not JSON is dead-lettered."""
    try:
        return json.loads(msg.body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def create_broker(*, bootstrap_servers: str, service: str, telemetry: Telemetry,
                  retry_backoff_s: float = 1.0, max_attempts: int = 5) -> KafkaBroker:
    """A broker whose publishes wait for every in-sync replica (acks=all) with an
    idempotent producer, so a publish that returned is durable."""
    broker_ref: list[KafkaBroker] = []
    failures: dict[tuple[str, int, int], int] = {}  # record -> attempts that raised something unexpected

    class DeadLetterMiddleware(BaseMiddleware):
        async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
            raw = msg.raw_message
            record = (raw.topic, raw.partition, raw.offset)
            try:
                result = await call_next(msg)
            except (ValidationError, PoisonMessage, ValueError) as exc:  # (UnicodeDecodeError is a ValueError)
                failures.pop(record, None)
                await dead_letter(broker_ref[0], service=service, raw=raw, reason=describe(exc))
                return None  # handled: the record is acknowledged and the partition moves on
            except TRANSIENT:
                log.exception("handler failed; the record will be redelivered")
                await asyncio.sleep(retry_backoff_s)
                raise  # the NACK policy rewinds: the record is delivered again
            except Exception as exc:
                if len(failures) > 10_000:  # records of partitions since handed elsewhere
                    failures.clear()
                attempts = failures[record] = failures.get(record, 0) + 1
                if attempts < max_attempts:
                    log.exception("handler failed (attempt %d of %d); the record will be redelivered",
                                  attempts, max_attempts)
                    await asyncio.sleep(retry_backoff_s)
                    raise
                failures.pop(record, None)
                await dead_letter(broker_ref[0], service=service, raw=raw,
                                  reason=f"failed {attempts} times: {describe(exc)}")
                return None
            failures.pop(record, None)
            return result

    broker = KafkaBroker(
        bootstrap_servers,
        client_id=f"deskstream-{service}",
        acks="all",
        enable_idempotence=True,
        linger_ms=1,
        max_request_size=MAX_REQUEST_BYTES,
        middlewares=[
            KafkaPrometheusMiddleware(registry=telemetry.registry, app_name=service,
                                      metrics_prefix="deskstream_broker"),
            DeadLetterMiddleware,
        ],
        logger=logging.getLogger(f"deskstream.{service}.broker"),
        decoder=decode_json,
    )
    broker_ref.append(broker)
    return broker


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


async def dead_letter(broker: KafkaBroker, *, service: str, raw: Any, reason: str) -> None:
    """Send a record that cannot be processed to `deadletter`, whole, with its origin."""
    value: bytes = raw.value or b""
    key = raw.key.decode(errors="replace") if raw.key else None
    try:
        text = value.decode()[:10000]
    except UnicodeDecodeError:
        text = None
    letter = DeadLetter(
        service=service, reason=reason, source_topic=raw.topic, source_partition=raw.partition,
        source_offset=raw.offset, source_key=key,
        original_base64=base64.b64encode(value).decode(), original_text=text, at=utcnow(),
    )
    event = make_event(EventType.DEAD_LETTER, letter, source=f"deskstream/{service}",
                       subject=key, id_=f"dl-{raw.topic}-{raw.partition}-{raw.offset}-{service}")
    log.warning("dead-lettered %s[%s]@%s: %s", raw.topic, raw.partition, raw.offset, reason)
    await broker.publish(event.model_dump(mode="json"), topics.DEADLETTER, key=(key or "").encode() or None,
                         headers={"content-type": "application/cloudevents+json"})


TOPIC_CONFIGS = {topics.DEADLETTER: {"max.message.bytes": str(DEADLETTER_MAX_BYTES)}}


async def ensure_topics(bootstrap_servers: str, names: tuple[str, ...] = topics.ALL,
                        partitions: int = DEFAULT_PARTITIONS) -> None:
    """Create the topics deskstream needs if they are missing (existing ones are left alone)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="deskstream-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name=n, num_partitions=partitions, replication_factor=1,
                            topic_configs=TOPIC_CONFIGS.get(n, {}))
                   for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except Exception as exc:  # another service created them first
                if "TopicAlreadyExists" not in type(exc).__name__ + str(exc):
                    raise
        # a topic made before (by the broker's auto-creation, or an older version) gets our settings
        configs = [ConfigResource(ConfigResourceType.TOPIC, n, configs=TOPIC_CONFIGS[n])
                   for n in names if n in existing and n in TOPIC_CONFIGS]
        if configs:
            await admin.alter_configs(configs)
    finally:
        await admin.close()
