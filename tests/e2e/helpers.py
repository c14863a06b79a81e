"""Small helpers for driving the running stack like a client would."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


def poll(fn: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    return None


def chat_message(session: str | None = None, text: str = "Hello, where is my order #1042?") -> dict[str, Any]:
    session = session or uuid.uuid4().hex[:12]
    return {"session_id": session, "message_id": f"m-{uuid.uuid4().hex[:8]}", "text": text,
            "customer": {"name": "Noura Al-Harbi", "email": f"{session}@example.com", "visitor_id": f"v-{session}"},
            "sent_at": "2026-11-23T10:00:00Z"}


async def read_topic(bootstrap: str, topic: str, *, until: Callable[[list[dict]], bool] | None = None,
                     timeout: float = 30.0) -> list[dict]:
    """Read a topic from the beginning with a plain Kafka consumer (no group) until `until` holds, or
    (without one) up to the end it had when the reading started."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list[dict] = []
    try:
        ends: dict[int, int] = {}
        seen: dict[int, int] = {}  # partition → the next offset after the last record read
        if until is None:
            await consumer.topics()  # the topic's partitions, now
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            ends = {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}

        def done() -> bool:
            if until is not None:
                return until(records)
            return all(seen.get(p, 0) >= offset for p, offset in ends.items())
        end = time.monotonic() + timeout
        while time.monotonic() < end and not done():
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                for record in part:
                    try:
                        body = json.loads(record.value)
                    except (ValueError, RecursionError):
                        body = None
                    if not isinstance(body, dict):  # junk someone sent (see test_poison_records)
                        body = {"_raw": record.value}
                    body["_key"] = record.key.decode(errors="replace") if record.key else None
                    body["_partition"] = record.partition
                    seen[record.partition] = record.offset + 1
                    records.append(body)
    finally:
        await consumer.stop()
    return records


def run(coro):
    return asyncio.run(coro)


# the chat token each session's first message was answered with, as a widget keeps it
CHAT_TOKENS: dict[str, str] = {}


def post_chat(ingest, message: dict[str, Any]):
    """Post a chat message as its widget would: with the session's chat token once it has one."""
    session = message["session_id"]
    if session in CHAT_TOKENS and "chat_token" not in message:
        message = {**message, "chat_token": CHAT_TOKENS[session]}
    r = ingest.post("/v1/inbound/chat", json=message)
    if r.status_code == 202:
        CHAT_TOKENS.setdefault(session, r.json()["chat_token"])
    return r


def file_chat(stack, message: dict[str, Any]) -> tuple[str, str]:
    """Send a chat message and wait until it is filed; returns (message id, ticket id)."""
    with stack.client("ingest") as ingest, stack.client("tickets") as tickets:
        r = post_chat(ingest, message)
        assert r.status_code == 202, r.text
        message_id = r.json()["message_id"]
        found = poll(lambda: (lambda resp: resp.json() if resp.status_code == 200 else None)(
            tickets.get(f"/v1/messages/{message_id}")))
        assert found, f"message {message_id} was never filed"
        return message_id, found["ticket_id"]


def post_and_file(stack, path: str, **body) -> tuple[str, dict[str, Any]]:
    """Post to an inbound door and wait until the message is filed: (its message id, its ticket)."""
    with stack.client("ingest", auth=False) as ingest, stack.client("tickets") as tickets:
        r = ingest.post(path, **body)
        assert r.status_code == 202, r.text
        message_id = r.json()["message_id"]
        where = poll(lambda: (lambda x: x.json() if x.status_code == 200 else None)(
            tickets.get(f"/v1/messages/{message_id}")))
        assert where, f"{path}: message {message_id} was never filed"
        return message_id, tickets.get(f"/v1/tickets/{where['ticket_id']}").json()


def mails_of_ticket(mailbox, ticket_id: str) -> list:
    """The mails the SMTP test server received for a ticket, parsed."""
    import email
    from email.policy import default

    return [p for p in (email.message_from_bytes(raw, policy=default) for raw in mailbox.mails)
            if p.get("X-Deskstream-Ticket") == ticket_id]
