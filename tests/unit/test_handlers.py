"""Subscribers in memory (FastStream's TestKafkaBroker): thin handlers, poison records dead-lettered.
The real-broker proof of the same paths is in tests/e2e."""
import base64
import json

import pytest
from faststream.kafka import TestKafkaBroker

from services.tickets import handlers
from shared import topics
from shared.events import EventType, make_event
from tests.unit.test_ticket_lifecycle import chat
from tests.unit.inmemory import broker_with


class RecordingService:
    def __init__(self):
        self.filed = []

    async def file_message(self, msg):
        self.filed.append(msg.message_id)

    async def apply_command(self, command):
        raise AssertionError("not expected")


@pytest.fixture
def broker_and_service():
    service = RecordingService()
    broker, letters = broker_with("tickets", handlers.build_router(service))
    return broker, service, letters


async def test_a_normalised_message_is_filed(broker_and_service):
    broker, service, letters = broker_and_service
    event = make_event(EventType.MESSAGE_RECEIVED, chat("m1"), source="test", subject="m1", id_="m1")
    async with TestKafkaBroker(broker) as br:
        await br.publish(event.model_dump(mode="json"), topics.INGEST_MESSAGES, key=b"chat:s1")
    assert service.filed == ["m1"] and letters == []


@pytest.mark.parametrize("raw", [b"not json at all", b'{"specversion": "1.0"}', b"\xff\xfe"])
async def test_a_record_that_cannot_be_read_goes_to_deadletter_with_its_bytes_and_reason(broker_and_service, raw):
    broker, service, letters = broker_and_service
    async with TestKafkaBroker(broker) as br:
        await br.publish(raw, topics.INGEST_MESSAGES, key=b"k1")
    assert service.filed == []
    assert len(letters) == 1
    letter = letters[0]
    assert letter["type"] == "deskstream.deadletter"
    assert base64.b64decode(letter["data"]["original_base64"]) == raw
    assert letter["data"]["source_topic"] == topics.INGEST_MESSAGES
    assert letter["data"]["source_key"] == "k1"
    assert letter["data"]["reason"]


async def test_a_message_event_with_a_broken_payload_is_dead_lettered(broker_and_service):
    broker, service, letters = broker_and_service
    event = make_event(EventType.MESSAGE_RECEIVED, chat("m1"), source="test", subject="m1").model_dump(mode="json")
    event["data"]["channel"] = "carrier-pigeon"
    async with TestKafkaBroker(broker) as br:
        await br.publish(json.dumps(event).encode(), topics.INGEST_MESSAGES)
    assert service.filed == [] and "channel" in letters[0]["data"]["reason"]


class BuggyService(RecordingService):
    def __init__(self, error: Exception):
        super().__init__()
        self.error, self.calls = error, 0

    async def file_message(self, msg):
        self.calls += 1
        raise self.error


def buggy_broker(error: Exception, **options):
    from shared.broker import create_broker
    from shared.telemetry import Telemetry

    service = BuggyService(error)
    broker = create_broker(bootstrap_servers="127.0.0.1:1", service="tickets", telemetry=Telemetry("tickets"),
                           retry_backoff_s=0, **options)
    broker.include_router(handlers.build_router(service))
    letters = []

    @broker.subscriber(topics.DEADLETTER, group_id="test")
    async def collect(body: dict) -> None:
        letters.append(body)

    return broker, service, letters


async def test_a_record_that_trips_a_bug_is_dead_lettered_once_its_attempts_are_used_up():
    broker, service, letters = buggy_broker(TypeError("'NoneType' object is not subscriptable"), max_attempts=3)
    event = make_event(EventType.MESSAGE_RECEIVED, chat("m1"), source="test", subject="m1", id_="m1")
    async with TestKafkaBroker(broker) as br:
        for _ in range(3):  # the in-memory broker does not redeliver: deliver it as Kafka would after a rewind
            try:
                await br.publish(event.model_dump(mode="json"), topics.INGEST_MESSAGES, key=b"k", partition=0)
            except TypeError:
                assert letters == []  # not yet: it is retried first
    assert service.calls == 3
    assert len(letters) == 1 and letters[0]["data"]["reason"].startswith("failed 3 times: TypeError")


async def test_an_unreachable_database_is_retried_for_as_long_as_it_lasts():
    from pymongo.errors import ServerSelectionTimeoutError

    broker, service, letters = buggy_broker(ServerSelectionTimeoutError("no servers"), max_attempts=1)
    event = make_event(EventType.MESSAGE_RECEIVED, chat("m1"), source="test", subject="m1", id_="m1")
    async with TestKafkaBroker(broker) as br:
        for _ in range(3):
            with pytest.raises(ServerSelectionTimeoutError):
                await br.publish(event.model_dump(mode="json"), topics.INGEST_MESSAGES, key=b"k")
    assert service.calls == 3 and letters == []


async def test_json_nested_too_deeply_to_read_is_dead_lettered(broker_and_service):
    broker, service, letters = broker_and_service
    async with TestKafkaBroker(broker) as br:
        await br.publish(b"[" * 100_000 + b"]" * 100_000, topics.INGEST_MESSAGES, key=b"deep")
    assert service.filed == [] and "nested too deeply" in letters[0]["data"]["reason"]
