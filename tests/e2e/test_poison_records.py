"""Every consumer against malformed, oversized and wrong-typed records on the real broker: each
one is dead-lettered with its source and reason by every service that reads it, no partition is
left stuck behind one, no service dies, and real traffic keeps flowing afterwards."""
from __future__ import annotations

import base64
import json
import random
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from shared import topics
from tests.e2e.helpers import chat_message, file_chat, poll, read_topic, run

# who reads each topic (a dead letter names the service that gave up on the record)
READERS = {
    topics.INGEST_MESSAGES: {"tickets"},
    topics.TICKETS_COMMANDS: {"tickets"},
    topics.SLA_EVENTS: {"tickets", "routing", "analytics"},
    topics.TICKETS_EVENTS: {"tickets", "routing", "sla", "analytics"},
}
PARTITIONS = 6

# after the rest of the suite: the junk stays in the topics other tests read from the start
pytestmark = pytest.mark.runs_last(order=1)


def envelope(type_: str, data, **extra) -> dict:
    return {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "fuzz", "type": type_,
            "time": "2026-11-23T10:00:00Z", "data": data, **extra}


def unreadable(rng: random.Random) -> list[tuple[str, bytes]]:
    """Records no reader can take as a CloudEvent, whatever the topic."""
    junk = bytes(rng.randrange(256) for _ in range(64))
    return [
        ("empty", b""),
        ("binary", b"\xff\xfe" + junk),
        ("array", b"[1, 2, 3]"),
        ("string", b'"just a string"'),
        ("null", b"null"),
        ("number", b"1e999"),
        ("truncated", json.dumps(envelope("deskstream.ticket.created", {}))[:-7].encode()),
        ("deep", b"[" * 100_000 + b"]" * 100_000),
        ("deep-object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        ("no-id", json.dumps({"specversion": "1.0", "source": "x", "type": "t", "time": "2026-11-23T10:00:00Z"}).encode()),
        ("id-is-a-number", json.dumps({**envelope("t", {}), "id": 5}).encode()),
        ("bad-time", json.dumps({**envelope("t", {}), "time": "yesterday"}).encode()),
        ("specversion-2", json.dumps({**envelope("t", {}), "specversion": "2.0"}).encode()),
        ("data-is-a-list", json.dumps(envelope("deskstream.ticket.created", [1, 2])).encode()),
        ("data-is-a-string", json.dumps(envelope("deskstream.sla.breached", "ticket")).encode()),
        ("lone-surrogate-id", b'{"specversion":"1.0","id":"\\ud800","source":"x","type":"t","time":"2026-11-23T10:00:00Z"}'),
        # ~900 kB: under Kafka's 1 MB record limit; its dead letter (base64 + text) is over it
        ("oversized", json.dumps({**envelope("t", {}), "specversion": "0", "pad": "x" * 900_000}).encode()),
        ("oversized-binary", b"\x00" + bytes(rng.randrange(256) for _ in range(700_000))),
    ]


# the readers of tickets.events that act on each type (the others skip it unread)
ACTS_ON = {"deskstream.ticket.replied": {"tickets", "sla", "analytics"},
           "deskstream.ticket.created": {"routing", "sla", "analytics"}}


def wrong_typed(topic: str) -> list[tuple[str, bytes, set[str]]]:
    """Well-formed envelopes of types the topic's readers act on, with data they cannot apply, and the
    readers that must refuse each."""
    snapshot = {"id": "TK-FUZZ", "status": "open", "channel": "chat", "customer_id": 7, "version": "x"}
    big = 10 ** 40
    per_topic = {
        topics.INGEST_MESSAGES: [
            ("message-without-fields", envelope("deskstream.message.received", {})),
            ("message-wrong-types", envelope("deskstream.message.received", {
                "message_id": 5, "channel": "carrier-pigeon", "text": ["a"], "customer": "someone"})),
            ("report-wrong-types", envelope("deskstream.message.delivery_reported", {"provider_id": {"a": 1}})),
        ],
        topics.TICKETS_COMMANDS: [
            ("assign-without-fields", envelope("deskstream.command.assign_ticket", {})),
            ("assign-unknown-ticket", envelope("deskstream.command.assign_ticket", {
                "command_id": uuid.uuid4().hex, "ticket_id": "TK-NOSUCH", "agent_id": "a", "team": big})),
            ("automation-wrong-types", envelope("deskstream.command.apply_automation", {"ticket_id": [1], "tags": 5})),
        ],
        topics.SLA_EVENTS: [
            ("breach-without-fields", envelope("deskstream.sla.breached", {})),
            ("warning-wrong-types", envelope("deskstream.sla.warning", {
                "ticket_id": {"$ne": None}, "target": "eternity", "at": "soon", "due_at": big})),
        ],
        topics.TICKETS_EVENTS: [
            ("replied-broken-snapshot", envelope("deskstream.ticket.replied", {"ticket": snapshot})),
            ("replied-ticket-is-a-list", envelope("deskstream.ticket.replied", {"ticket": [snapshot]})),
            ("created-broken-snapshot", envelope("deskstream.ticket.created", {"ticket": snapshot})),
        ],
    }
    return [(name, json.dumps(body).encode(), ACTS_ON.get(body["type"], READERS[topic]))
            for name, body in per_topic[topic]]


def test_every_consumer_dead_letters_bad_records_and_keeps_flowing(stack, agent):
    rng = random.Random(20261124)
    run_id = uuid.uuid4().hex[:8]
    sent: dict[str, tuple[str, set[str]]] = {}  # key -> (topic, services that must dead-letter it)

    async def send_all() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, max_request_size=2_000_000)
        await producer.start()
        try:
            for topic, readers in READERS.items():
                corpus = [(name, value, readers) for name, value in unreadable(rng)] + wrong_typed(topic)
                for i, (name, value, refusing) in enumerate(corpus):
                    key = f"fuzz-{run_id}-{topic}-{name}"
                    sent[key] = (topic, refusing)
                    await producer.send_and_wait(topic, value, key=key.encode(), partition=i % PARTITIONS)
                # a record with an unreadable key, then a sentinel on every partition: once every reader
                # has dead-lettered the sentinels, no partition is stuck behind anything sent before
                await producer.send_and_wait(topic, b"{", key=b"\xff\xfe" + run_id.encode(), partition=0)
                for p in range(PARTITIONS):
                    key = f"fuzz-{run_id}-{topic}-sentinel-{p}"
                    sent[key] = (topic, readers)
                    await producer.send_and_wait(topic, b"sentinel", key=key.encode(), partition=p)
        finally:
            await producer.stop()

    run(send_all())

    def missing(letters: list[dict]) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for letter in letters:
            data = letter.get("data", {})
            seen.setdefault(data.get("source_key"), set()).add(data.get("service"))
        return {k: readers - seen.get(k, set()) for k, (_, readers) in sent.items() if readers - seen.get(k, set())}

    letters = run(read_topic(stack.kafka_bootstrap, topics.DEADLETTER, until=lambda rs: not missing(rs), timeout=120))
    assert not missing(letters), f"not dead-lettered by: {missing(letters)}"

    mine = [letter["data"] for letter in letters if str(letter.get("data", {}).get("source_key")).startswith(f"fuzz-{run_id}")]
    for data in mine:
        topic, _ = sent[data["source_key"]]
        assert data["source_topic"] == topic and data["reason"] and data["source_offset"] is not None
    oversized = next(d for d in mine if d["source_key"].endswith(f"{topics.TICKETS_EVENTS}-oversized"))
    assert len(base64.b64decode(oversized["original_base64"])) > 900_000  # kept whole, so it can be re-driven

    # nobody died, and real traffic still goes all the way: filed, assigned, timed, counted
    for name in ("ingest", "tickets", "routing", "sla", "analytics"):
        with stack.client(name, auth=False) as c:
            assert c.get("/healthz").status_code == 200, name
    with stack.client("analytics", auth=False) as c:
        counted_before = c.get("/v1/summary").json()["tickets_total"]
    _, ticket_id = file_chat(stack, chat_message())
    with stack.client("tickets") as tickets, stack.client("sla") as sla, stack.client("analytics") as analytics, \
            stack.client("routing") as routing:
        def routed() -> bool:  # given to an agent, or waiting for one (agents may be full by now)
            return bool(tickets.get(f"/v1/tickets/{ticket_id}").json()["assignee"]) or any(
                item["ticket_id"] == ticket_id for item in routing.get("/v1/queue", params={"limit": 1000}).json()["items"])

        assert poll(routed, timeout=60)
        assert poll(lambda: sla.get(f"/v1/tickets/{ticket_id}/sla").status_code == 200, timeout=60)
        assert poll(lambda: analytics.get("/v1/summary").json()["tickets_total"] > counted_before, timeout=60)


def test_unknown_event_types_are_skipped_not_dead_lettered(stack, agent):
    """Forward compatibility: a newer producer's event type is none of an older reader's business."""
    key = f"fuzz-unknown-{uuid.uuid4().hex[:8]}"
    sentinel = f"{key}-sentinel"

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
        await producer.start()
        try:
            body = envelope("com.example.something_new", {"anything": [1, {"x": None}]})
            await producer.send_and_wait(topics.TICKETS_EVENTS, json.dumps(body).encode(), key=key.encode(), partition=1)
            await producer.send_and_wait(topics.TICKETS_EVENTS, b"?", key=sentinel.encode(), partition=1)
        finally:
            await producer.stop()

    run(send())

    def sentinel_done(rs: list[dict]) -> bool:
        return {r["data"]["service"] for r in rs if r.get("data", {}).get("source_key") == sentinel} >= \
            READERS[topics.TICKETS_EVENTS]

    letters = run(read_topic(stack.kafka_bootstrap, topics.DEADLETTER, until=sentinel_done, timeout=60))
    assert sentinel_done(letters)  # every reader has moved past the unknown event
    assert not [r for r in letters if r.get("data", {}).get("source_key") == key]

