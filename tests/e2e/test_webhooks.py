"""Webhook subscriptions over the real stack: a real HTTP receiver that verifies every delivery
with the `standardwebhooks` library, an outage it answers 500 through, the delivery log that
shows it, a replay, and refused targets."""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pymongo import MongoClient
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.e2e.helpers import chat_message, file_chat, poll, post_chat, read_topic, run

pytestmark = pytest.mark.e2e


class Receiver:
    """A subscriber's endpoint: verifies each request's signature, answers 500 until `down_until`
    (time.monotonic()), keeps the events it accepted in arrival order and de-duplicates them by
    `webhook-id`, as the Standard Webhooks spec asks receivers to."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.down_until = 0.0
        self.requests = 0
        self.refused = 0
        self.bad_signatures = 0
        self.accepted: list[dict] = []  # first arrival of each id
        self.seen: set[str] = set()
        self.redeliveries = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server calls it by this name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status = receiver.handle(body, {k: v for k, v in self.headers.items()})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.handler = Handler
        self.port = 0
        self.start()
        self.url = f"http://127.0.0.1:{self.port}/hooks/deskstream"

    def start(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Off the network: connections are refused, as by a subscriber that is down."""
        self.server.shutdown()
        self.server.server_close()

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        with self.lock:
            self.requests += 1
            try:
                event = Webhook(self.secret).verify(body, headers)
            except WebhookVerificationError:
                self.bad_signatures += 1
                return 400
            if time.monotonic() < self.down_until:
                self.refused += 1
                return 500
            if event["id"] != headers.get("webhook-id"):
                self.bad_signatures += 1
                return 400
            if event["id"] in self.seen:
                self.redeliveries += 1
            else:
                self.seen.add(event["id"])
                self.accepted.append(event)
            return 204

    def of_ticket(self, ticket_id: str, prefix: str) -> list[str]:
        with self.lock:
            return [e["id"] for e in self.accepted if e.get("subject") == ticket_id and e["type"].startswith(prefix)]

    def close(self) -> None:
        self.stop()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def subscribe(stack, receiver: Receiver, **extra) -> str:
    webhook_id = f"crm-{uuid.uuid4().hex[:8]}"
    with stack.client("tickets") as tickets:
        r = tickets.put(f"/v1/webhooks/{webhook_id}", json={"url": receiver.url, **extra})
        assert r.status_code == 200, r.text
        receiver.secret = r.json().get("secret") or extra.get("secret")
    time.sleep(1.5)  # every tickets process has read the subscription (announced, and re-read each second)
    return webhook_id


def arrived_in_order(stack, receiver: Receiver, ticket_ids: list[str], seen: dict) -> bool:
    """Every `deskstream.ticket.*` event of these tickets reached the receiver, in the topic's order
    (read again each time: replies' delivery reports keep coming for a moment)."""
    expected = topic_order(stack, set(ticket_ids), "tickets.events", "deskstream.ticket.", wanted=len(ticket_ids))
    seen.update({t: (receiver.of_ticket(t, "deskstream.ticket."), expected[t]) for t in ticket_ids})
    return all(want and got == want for got, want in seen.values())


def topic_order(stack, ticket_ids: set[str], topic: str, prefix: str, wanted: int) -> dict[str, list[str]]:
    """Each ticket's events in the topic's order, read to the topic's end (stopping at the first `wanted`
    records of the tickets would leave out those fetched later, on a topic a long suite has filled)."""
    records = run(read_topic(stack.kafka_bootstrap, topic, timeout=60))
    if sum(1 for r in records if r.get("subject") in ticket_ids) < wanted:
        return defaultdict(list)  # not all there yet: nothing counts as arrived
    order: dict[str, list[str]] = defaultdict(list)
    for r in records:
        if r.get("subject") in ticket_ids and r.get("type", "").startswith(prefix):
            order[r["subject"]].append(r["id"])
    return order


def test_a_subscription_shows_its_generated_secret_once_and_refuses_non_http_urls(stack):
    with stack.client("tickets") as tickets:
        r = tickets.put("/v1/webhooks/shown-once", json={"url": "https://hooks.example/deskstream",
                                                          "events": ["deskstream.ticket.*"]})
        assert r.status_code == 200, r.text
        made = r.json()
        assert made["secret"].startswith("whsec_") and made["active"] is True
        assert made["events"] == ["deskstream.ticket.*"]
        again = tickets.get("/v1/webhooks/shown-once").json()
        assert "secret" not in again and again["url"] == "https://hooks.example/deskstream"
        stored = MongoClient(os.environ["MONGODB_URL"])[stack.database]["webhooks"].find_one({"_id": "shown-once"})
        assert stored["secret"] and made["secret"] not in str(stored)  # kept sealed, never in clear
        assert "secret" not in tickets.put("/v1/webhooks/shown-once",
                                           json={"url": "https://hooks.example/v2"}).json()  # kept, not new
        assert tickets.put("/v1/webhooks/x", json={"url": "ftp://hooks.example/"}).status_code == 400
        assert tickets.put("/v1/webhooks/x", json={"url": "https://hooks.example/",
                                                   "secret": "not-a-secret"}).status_code == 400
        assert tickets.delete("/v1/webhooks/shown-once").status_code == 204
        assert tickets.get("/v1/webhooks/shown-once").status_code == 404
    with stack.client("tickets", auth=False) as anonymous:
        assert anonymous.get("/v1/webhooks/anything").status_code == 401


def test_events_reach_a_receiver_that_was_down_every_one_in_order_per_ticket(stack, agent, receiver):
    webhook_id = subscribe(stack, receiver, secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
    receiver.down_until = time.monotonic() + 6  # the subscriber answers 500 for six seconds
    ticket_ids = []
    for _ in range(3):
        message = chat_message()
        _, ticket_id = file_chat(stack, message)
        ticket_ids.append(ticket_id)
        with stack.client("ingest") as ingest:
            assert post_chat(ingest, {**message, "message_id": f"m-{uuid.uuid4().hex[:8]}",
                                      "text": "Any news?"}).status_code == 202
    with stack.client("tickets") as tickets:
        for ticket_id in ticket_ids:
            r = tickets.post(f"/v1/tickets/{ticket_id}/replies", json={"agent_id": agent, "text": "On its way."})
            assert r.status_code == 201, r.text
    seen: dict[str, tuple] = {}
    assert poll(lambda: arrived_in_order(stack, receiver, ticket_ids, seen), timeout=120, interval=2), seen
    expected = {t: want for t, (_, want) in seen.items()}
    assert receiver.refused > 0 and receiver.bad_signatures == 0
    ours = {e for t in ticket_ids for e in expected[t]}
    log: list[dict] = []

    def logged_both() -> bool:  # attempts reach the log in batches (every half second), after the receiver
        with stack.client("tickets") as tickets:
            log[:] = tickets.get(f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": 1000}).json()["deliveries"]
        return {500, 204} <= {a["status_code"] for a in log if a["event_id"] in ours}

    assert poll(logged_both, timeout=15, interval=0.5), {a["status_code"] for a in log if a["event_id"] in ours}
    failed = next(a for a in log if a["status_code"] == 500)
    assert failed["outcome"] == "retrying" and failed["next_attempt_at"] and failed["error"] == "answered 500"
    assert failed["latency_ms"] >= 0 and failed["type"].startswith("deskstream.")


def test_a_replay_sends_what_matched_since_then_again(stack, agent, receiver):
    webhook_id = subscribe(stack, receiver, events=["deskstream.ticket.created"])
    since = time.time()
    _, ticket_id = file_chat(stack, chat_message())
    assert poll(lambda: receiver.of_ticket(ticket_id, "deskstream.ticket."), timeout=30)
    created = receiver.of_ticket(ticket_id, "")
    assert len(created) == 1  # only what the pattern wants
    with receiver.lock:
        before = receiver.requests
    with stack.client("tickets") as tickets:
        r = tickets.post(f"/v1/webhooks/{webhook_id}/replay",
                         json={"since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since - 1))})
        assert r.status_code == 202, r.text
        assert r.json()["queued"] >= 1
    assert poll(lambda: receiver.redeliveries >= 1, timeout=30)  # the same id again: the receiver drops it
    assert receiver.requests > before and receiver.of_ticket(ticket_id, "") == created


def test_a_deleted_subscription_gets_nothing_more(stack, receiver):
    webhook_id = subscribe(stack, receiver)
    with stack.client("tickets") as tickets:
        assert tickets.delete(f"/v1/webhooks/{webhook_id}").status_code == 204
        assert tickets.get(f"/v1/webhooks/{webhook_id}/deliveries").status_code == 404
    time.sleep(1.5)
    _, ticket_id = file_chat(stack, chat_message())
    time.sleep(2)
    assert receiver.of_ticket(ticket_id, "") == []
    assert json.dumps(receiver.accepted)  # (what it had received before stays readable)


@pytest.mark.runs_last(order=3)  # restarts the tickets service
def test_a_subscriber_down_while_tickets_change_and_tickets_restarts_gets_every_event_afterwards(stack, agent,
                                                                                                receiver):
    subscribe(stack, receiver, events=["deskstream.ticket.*"])
    receiver.stop()
    ticket_ids, slowest = [], 0.0
    for i in range(20):
        started = time.monotonic()
        ticket_ids.append(file_chat(stack, chat_message(text=f"Order #{4100 + i} has not arrived"))[1])
        slowest = max(slowest, time.monotonic() - started)
    with stack.client("tickets") as tickets:
        for ticket_id in ticket_ids:
            r = tickets.post(f"/v1/tickets/{ticket_id}/replies", json={"agent_id": agent, "text": "Checking now."})
            assert r.status_code == 201, r.text
    assert slowest < 5, f"filing took {slowest:.1f}s while a subscriber was down"  # nothing else waits for it
    time.sleep(3)  # queued, and retried against a subscriber that refuses connections
    stack.kill("tickets")
    stack.restart("tickets")
    receiver.start()
    seen: dict[str, tuple] = {}
    assert poll(lambda: arrived_in_order(stack, receiver, ticket_ids, seen), timeout=180, interval=3), seen
    assert sum(len(want) for _, want in seen.values()) >= 20 * 4 and receiver.bad_signatures == 0
