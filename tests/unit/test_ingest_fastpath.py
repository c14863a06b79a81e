"""The faster request path gives every sender the answer, and Kafka the record, the slower one gave."""
import asyncio
import json
import random
from datetime import UTC, datetime

import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner
from fastapi import APIRouter, FastAPI, Request

from services.ingest.app import create_app
from services.ingest.bodies import parse_json
from services.ingest.channels.chat import ChatInbound, normalise_chat
from services.ingest.domain import MAX_RECORD_BYTES, encoded_for_kafka, fit_for_kafka
from services.ingest.front import DirectRoutes
from services.ingest.records import BATCH_BYTES, CONTENT_TYPE, KafkaRecords, KeyPartitioner, encode_event
from services.ingest.service import IngestService
from services.ingest.settings import IngestSettings
from shared.events import Channel, DeliveryReported, EventType, make_event
from shared.http import ApiError
from tests.unit.test_ingest_http import BASE, MemoryBlobs, RecordingPublisher, hook, raw_mail, text

NOW = datetime(2026, 11, 23, 10, 0, 0, 123000, tzinfo=UTC)
CHAT = {"session_id": "s-1", "message_id": "m-1", "text": "Hello, where is my order?",
        "customer": {"name": "Ana", "visitor_id": "v-9", "email": "Ana@Example.COM"}, "sent_at": "2026-11-23T10:00:00Z"}


def message(**changes):
    payload = ChatInbound.model_validate({**CHAT, **changes})
    return normalise_chat(payload, received_at=NOW)


# ------------------------------------------------------------------ the record on Kafka


@pytest.mark.parametrize("time_", [NOW, NOW.replace(microsecond=0)])
def test_a_record_is_the_event_make_event_describes(time_):
    m = message()
    _, data = encoded_for_kafka(m)
    record = encode_event(EventType.MESSAGE_RECEIVED, data, id_=m.message_id, source="deskstream/ingest",
                          subject=m.message_id, time_=time_)
    event = make_event(EventType.MESSAGE_RECEIVED, m, source="deskstream/ingest", subject=m.message_id,
                       id_=m.message_id, time=time_)
    assert json.loads(record) == event.model_dump(mode="json")


def test_a_delivery_report_record_is_the_event_make_event_describes():
    report = DeliveryReported(channel=Channel.sms, provider_id='SM"1', state="delivered", provider_status="delivered",
                              at=NOW)
    record = encode_event(EventType.DELIVERY_REPORTED, report.model_dump_json().encode(), id_="dr-1",
                          source="deskstream/ingest", subject=report.provider_id, time_=NOW)
    event = make_event(EventType.DELIVERY_REPORTED, report, source="deskstream/ingest", subject=report.provider_id,
                       id_="dr-1", time=NOW)
    assert json.loads(record) == event.model_dump(mode="json")


def test_a_message_too_big_for_a_record_is_cut_as_before():
    big = message(text="x" * 99_000).model_copy(update={"html": "<p>" + "y" * 900_000 + "</p>"})
    fitted, data = encoded_for_kafka(big)
    assert fitted == fit_for_kafka(big) and fitted.html is None
    assert json.loads(data) == fitted.model_dump(mode="json") and len(data) <= MAX_RECORD_BYTES


def test_a_lone_surrogate_is_cleaned_before_encoding():
    m = message().model_copy(update={"text": "bad \ud800 char"})
    fitted, data = encoded_for_kafka(m)
    assert json.loads(data)["text"] == "bad \ufffd char"


def test_keys_land_on_the_partitions_the_default_partitioner_picks():
    rng = random.Random(3)
    partitions = list(range(6))
    for _ in range(500):
        key = rng.randbytes(rng.randrange(0, 40))
        assert KeyPartitioner()(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)
    assert KeyPartitioner()(None, partitions, [2]) == 2


# ------------------------------------------------------------------ parsing JSON bodies


@pytest.mark.parametrize("body", [
    json.dumps(CHAT).encode(),
    json.dumps({**CHAT, "text": "مرحبا، أين طلبي؟"}).encode(),  # escaped non-ASCII
    json.dumps({**CHAT, "text": "مرحبا، أين طلبي؟"}, ensure_ascii=False).encode(),
    json.dumps({**CHAT, "text": "emoji \U0001f600"}).encode(),  # a surrogate pair, escaped: not a lone one
])
def test_a_valid_body_parses_to_what_json_loads_and_validation_gave(body):
    assert parse_json(body, ChatInbound) == ChatInbound.model_validate(json.loads(body))


def test_a_lone_surrogate_in_a_body_is_still_replaced():
    body = json.dumps({**CHAT, "text": "half \ud83d of it"}).encode()
    assert parse_json(body, ChatInbound).text == "half \ufffd of it"


@pytest.mark.parametrize("body", [b"{not json", b'{"a": [1,]}', b"\xff\xfe", b'{"s": "x\x01"}'])
def test_invalid_json_is_described_by_json_loads_as_before(body):
    with pytest.raises(ApiError) as caught:
        parse_json(body, ChatInbound)
    try:
        json.loads(body)
    except ValueError as exc:
        assert caught.value.message == f"the body is not valid JSON: {exc}"


# ------------------------------------------------------------------ the front: the same answers as FastAPI


def apps():
    """The app as built, and the same app without the front (FastAPI serving every route)."""
    built = []
    for direct in (True, False):
        publisher = RecordingPublisher()
        service = IngestService(publisher=publisher, source="test", blobs=MemoryBlobs(), is_connected=lambda: True)
        app = create_app(IngestSettings(twilio_auth_token=None, meta_app_secret=None, meta_verify_token="vt",
                                        public_url=BASE, rate_limit_per_min=60, rate_limit_burst=3), service=service)
        built.append((app if direct else app.fastapi, publisher))
    return built


JSON = {"content-type": "application/json"}
REQUESTS = [
    ("POST", "/v1/inbound/chat", json.dumps(CHAT).encode(), JSON),
    ("POST", "/v1/inbound/chat", json.dumps(CHAT).encode(), JSON),  # a redelivery: the same id
    ("POST", "/v1/inbound/chat", b"{not json", JSON),
    ("POST", "/v1/inbound/chat", json.dumps({**CHAT, "sent_at": "2026-11-23T10:00:00"}).encode(), JSON),
    ("POST", "/v1/inbound/chat", json.dumps({**CHAT, "customer": {**CHAT["customer"], "email": "nope"}}).encode(),
     JSON),
    ("POST", "/v1/inbound/chat", json.dumps(CHAT).encode(), JSON),
    ("POST", "/v1/inbound/chat", json.dumps(CHAT).encode(), JSON),  # over the burst of 3: 429
    ("POST", "/v1/inbound/chat", b"x" * 300_000, JSON),  # 413
    ("POST", "/v1/inbound/chat/", json.dumps(CHAT).encode(), JSON),  # not a route: FastAPI's redirect
    ("GET", "/v1/inbound/chat", b"", {}),  # wrong method: FastAPI's 405
    ("PUT", "/v1/inbound/email", b"", {}),
    ("POST", "/v1/inbound/email", raw_mail(), {"content-type": "message/rfc822"}),
    ("POST", "/v1/inbound/email", b"hello, this is no mail\r\n", {"content-type": "message/rfc822"}),
    ("POST", "/v1/inbound/sms", b"MessageSid=SM1&From=%2B966501234567&To=%2B14155550100&Body=hi",
     {"content-type": "application/x-www-form-urlencoded"}),
    ("POST", "/v1/inbound/sms/status", b"MessageSid=SM1&MessageStatus=delivered",
     {"content-type": "application/x-www-form-urlencoded"}),
    ("POST", "/v1/inbound/whatsapp", hook(text("wamid.1", "hi")), JSON),
    ("POST", "/v1/inbound/whatsapp", hook(statuses=[{"id": "wamid.OUT", "status": "read"}]), JSON),
    ("GET", "/v1/inbound/whatsapp?hub.mode=subscribe&hub.verify_token=vt&hub.challenge=42", b"", {}),
    ("GET", "/v1/inbound/whatsapp?hub.mode=subscribe&hub.verify_token=no&hub.challenge=42", b"", {}),
    ("POST", "/v1/inbound/webform", json.dumps({"email": "not-an-address", "message": "hi"}).encode(), JSON),
    ("POST", "/v1/inbound/voice", json.dumps({"call_id": "CA1", "from": "07946 0958", "to": "+14155550100",
                                               "started_at": "2026-11-23T09:00:00Z", "transcript": "hi"}).encode(),
     JSON),
    ("GET", "/healthz", b"", {}),
    ("GET", "/nowhere", b"", {}),
]


async def test_every_answer_is_the_one_fastapi_gave():
    answers = []
    for app, publisher in apps():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
            got = []
            for method, path, body, headers in REQUESTS:
                r = await http.request(method, path, content=body, headers=headers)
                got.append((r.status_code, r.headers.get("content-type"), r.headers.get("retry-after"),
                            r.headers.get("location"), r.content))
        # the times are when each ran (a mail without a Date was sent when received); the rest is the same
        records = [{**{k: v for k, v in r.items() if k != "time"},
                    "data": {k: v for k, v in r["data"].items() if k not in ("received_at", "sent_at", "at")}}
                   for r in publisher.records]
        answers.append((got, records))
    (direct, direct_records), (fastapi, fastapi_records) = answers
    for request, a, b in zip(REQUESTS, direct, fastapi):
        if request[1] != "/healthz":  # its body says whether a real broker answers: neither does here
            assert a == b, request[:2]
    assert direct_records == fastapi_records and len(direct_records) == 8
    assert [status for status, *_ in direct[:8]] == [202, 202, 422, 422, 422, 202, 429, 413]


async def test_an_unexpected_error_is_still_a_500_from_fastapi():
    app = FastAPI()
    router = APIRouter()

    @router.post("/boom")
    async def boom(request: Request):
        raise RuntimeError("bug")

    app.include_router(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=DirectRoutes(app, router.routes),
                                                               raise_app_exceptions=False),
                                 base_url=BASE) as http:
        answer = await http.post("/boom")
    assert answer.status_code == 500 and answer.text == "Internal Server Error"


def test_a_route_that_needs_fastapi_s_parameters_is_refused():
    router = APIRouter()

    @router.get("/items/{item_id}")
    async def item(item_id: int):
        return {}

    with pytest.raises(ValueError, match="besides the request"):
        DirectRoutes(FastAPI(), router.routes)


# ------------------------------------------------------------------ the producer: a 202 still means durable


async def test_ingest_s_producer_waits_for_every_replica_and_is_idempotent():
    producer = KafkaRecords("127.0.0.1:1", "ingest.messages", client_id="test")._new_producer()
    try:  # aiokafka keeps these privately; read here so that a change to them fails loudly
        assert producer._sender._acks == -1  # acks="all"
        assert producer._txn_manager is not None  # made only for an idempotent producer
        assert producer._message_accumulator._batch_size == BATCH_BYTES
    finally:
        await producer.stop()


class AckLater:
    """A producer whose records are acknowledged (or failed) when the test says so."""

    def __init__(self):
        self.acks = []

    async def send(self, topic, *, value, key, headers):
        self.acks.append(asyncio.get_running_loop().create_future())
        return self.acks[-1]


async def test_a_publish_returns_only_once_kafka_acknowledged_and_raises_when_it_did_not():
    records = KafkaRecords("127.0.0.1:1", "ingest.messages", client_id="test")
    records._producer = producer = AckLater()
    publish = asyncio.create_task(records.publish(b"{}", b"k", [CONTENT_TYPE]))
    await asyncio.sleep(0.01)
    assert not publish.done()  # queued, not yet acknowledged
    producer.acks[0].set_result(None)
    await publish
    failing = asyncio.create_task(records.publish(b"{}", b"k", [CONTENT_TYPE]))
    await asyncio.sleep(0.01)
    producer.acks[1].set_exception(ConnectionError("broker gone"))
    with pytest.raises(ConnectionError):
        await failing


async def test_while_the_broker_acknowledges_nothing_new_records_are_refused_not_held():
    now = [100.0]
    records = KafkaRecords("127.0.0.1:1", "ingest.messages", client_id="test", stall_s=3.0, clock=lambda: now[0])
    records._producer = producer = AckLater()
    held = asyncio.create_task(records.publish(b"{}", b"k", [CONTENT_TYPE]))
    await asyncio.sleep(0.01)
    now[0] += 2.0  # waiting, but not for long: another record joins it
    second = asyncio.create_task(records.publish(b"{}", b"k", [CONTENT_TYPE]))
    await asyncio.sleep(0.01)
    assert len(producer.acks) == 2 and records.stalled_for() == 2.0
    now[0] += 1.5  # the oldest has waited 3.5 s: the broker is away
    with pytest.raises(ConnectionError, match="acknowledged no record for 3.5 s"):
        await records.publish(b"{}", b"k", [CONTENT_TYPE])
    assert len(producer.acks) == 2  # refused before it reached the producer
    producer.acks[0].set_result(None)  # the broker is back: the held ones are acknowledged
    producer.acks[1].set_result(None)
    await asyncio.gather(held, second)
    assert records.stalled_for() == 0.0
    taken = asyncio.create_task(records.publish(b"{}", b"k", [CONTENT_TYPE]))
    await asyncio.sleep(0.01)
    producer.acks[2].set_result(None)
    await taken


async def test_one_record_held_up_does_not_stop_new_ones_while_the_broker_acknowledges_others():
    now = [100.0]
    records = KafkaRecords("127.0.0.1:1", "ingest.messages", client_id="test", stall_s=3.0, clock=lambda: now[0])
    records._producer = producer = AckLater()
    straggler = asyncio.create_task(records.publish(b"{}", b"k", [CONTENT_TYPE]))  # its partition's leader moved
    await asyncio.sleep(0.01)
    for _ in range(5):  # others are acknowledged, one a second
        now[0] += 1.0
        other = asyncio.create_task(records.publish(b"{}", b"k", [CONTENT_TYPE]))
        await asyncio.sleep(0.01)
        producer.acks[-1].set_result(None)
        await other
    assert records.stalled_for() == 0.0  # the straggler has waited 5 s, but the broker acknowledged 0 s ago
    now[0] += 3.5  # then nothing is acknowledged for 3.5 s: refused
    with pytest.raises(ConnectionError):
        await records.publish(b"{}", b"k", [CONTENT_TYPE])
    producer.acks[0].set_result(None)
    await straggler
