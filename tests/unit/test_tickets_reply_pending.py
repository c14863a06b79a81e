"""A reply on Kafka whose owner has not answered yet is answered 201 (pending), not 5xx: a client
retrying a 5xx without an Idempotency-Key would send the customer the answer twice."""
from __future__ import annotations

from types import SimpleNamespace

from fastapi.testclient import TestClient

from services.tickets import api
from services.tickets.commands import Pending, Unavailable
from services.tickets.customers import CustomerBook
from shared.http import create_http_app, require_token


class Bus:
    def __init__(self, error: Exception) -> None:
        self.error, self.sent = error, []

    async def send(self, type_, command):
        self.sent.append(command)
        raise self.error


def client(bus: Bus) -> TestClient:
    runtime = SimpleNamespace(settings=SimpleNamespace(api_token=None, agent_token=None), service="tickets",
                              telemetry=None)
    router = api.build_router(store=None, deliveries=None, bus=bus, customers=CustomerBook(),
                              auth=require_token(runtime), publish_customer=None)
    return TestClient(create_http_app(runtime, title="t", description="d", routers=[router]))  # no lifespan: not started


def post(bus: Bus):
    return client(bus).post("/v1/tickets/TK-1/replies", json={"agent_id": "a1", "text": "It ships today."},
                            headers={"Idempotency-Key": "k1"})


def test_a_reply_on_kafka_without_an_answer_yet_is_201_pending_with_its_message_id():
    bus = Bus(Pending("no answer within 10 s"))
    r = post(bus)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["pending"] is True and body["message"]["message_id"] == bus.sent[0].message_id


def test_a_reply_that_never_reached_kafka_is_503_and_safe_to_retry():
    r = post(Bus(Unavailable("the command could not be sent")))
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
