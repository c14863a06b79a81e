"""The per-source rate limit: what a sender over it hears (429, Retry-After), and what others keep getting."""
import json

import pytest

from services.ingest.ratelimit import RateLimiter, retry_after
from tests.unit.test_ingest_http import JSON, Ingest, hook, text


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_source_gets_its_burst_then_one_message_per_interval():
    clock = Clock()
    limiter = RateLimiter(per_minute=6, burst=3, clock=clock)  # one token every 10 s
    assert [limiter.take({"a": 1}) for _ in range(3)] == [0, 0, 0]
    assert limiter.take({"a": 1}) == pytest.approx(10)
    clock.now += 4
    assert limiter.take({"a": 1}) == pytest.approx(6)  # refused: nothing taken, the wait shrinks
    clock.now += 6
    assert limiter.take({"a": 1}) == 0
    assert limiter.take({"a": 1}) == pytest.approx(10)


def test_sources_are_limited_separately_and_a_bucket_refills_only_to_the_burst():
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    assert limiter.take({"a": 2}) == 0 and limiter.take({"a": 1}) > 0
    assert limiter.take({"b": 2}) == 0
    clock.now += 3600
    assert limiter.take({"a": 2}) == 0 and limiter.take({"a": 1}) > 0


def test_several_sources_pay_all_or_none():
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    limiter.take({"a": 2})
    assert limiter.take({"a": 1, "b": 1}) == pytest.approx(1)
    assert limiter.take({"b": 2}) == 0  # b paid nothing for the refused webhook


def test_a_cost_above_the_burst_passes_once_the_bucket_is_full():
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    assert limiter.take({"a": 5}) == 0
    assert limiter.take({"a": 5}) == pytest.approx(2)


def test_memory_is_bounded_by_forgetting_the_longest_idle_source():
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock, max_sources=2)
    for source in ("a", "b"):
        limiter.take({source: 1})
    limiter.take({"b": 0})  # b is active again: a is now the longest idle
    limiter.take({"c": 1})
    assert limiter.take({"b": 1}) > 0 and limiter.take({"c": 1}) > 0
    assert limiter.take({"a": 1}) == 0  # forgotten, so it starts full


def test_retry_after_is_whole_seconds_and_never_zero():
    assert [retry_after(w) for w in (0.01, 1.0, 1.2, 59.9)] == ["1", "1", "2", "60"]


def chat(visitor: str, n: int, email: str | None = None) -> dict:
    customer = {"name": "Ana", "visitor_id": visitor, **({"email": email} if email else {})}
    return {"session_id": f"s-{visitor}-{n}", "message_id": f"m-{n}", "text": f"message {n}", "customer": customer,
            "sent_at": "2026-11-23T10:00:00Z"}


async def test_a_sender_over_the_limit_gets_429_with_retry_after_and_nothing_is_published():
    ingest = Ingest(rate_limit_per_min=60, rate_limit_burst=2)
    async with ingest.client() as http:
        answers = [await http.post("/v1/inbound/chat", json=chat("v-1", n)) for n in range(3)]
        other_sender = await http.post("/v1/inbound/chat", json=chat("v-2", 0))
        same_person_by_sms = await http.post("/v1/inbound/sms", data={
            "MessageSid": "SM1", "From": "+966501234567", "To": "+14155550100", "Body": "hi"})
    assert [a.status_code for a in answers] == [202, 202, 429]
    refused = answers[2]
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "rate_limited"
    assert other_sender.status_code == same_person_by_sms.status_code == 202
    assert [m["text"] for m in ingest.published] == ["message 0", "message 1", "message 0", "hi"]


async def test_a_whatsapp_webhook_over_the_limit_is_refused_whole():
    ingest = Ingest(rate_limit_per_min=1, rate_limit_burst=2)
    async with ingest.client() as http:
        first = await http.post("/v1/inbound/whatsapp", headers=JSON,
                                content=hook(text("wamid.1", "one"), text("wamid.2", "two")))
        second = await http.post("/v1/inbound/whatsapp", headers=JSON,
                                 content=hook(text("wamid.3", "three")))
    assert first.status_code == 202 and second.status_code == 429
    assert int(second.headers["retry-after"]) == 60
    assert [m["text"] for m in ingest.published] == ["one", "two"]


async def test_the_limit_can_be_turned_off():
    ingest = Ingest(rate_limit_per_min=0, rate_limit_burst=1)
    async with ingest.client() as http:
        answers = [await http.post("/v1/inbound/chat", json=chat("v-1", n)) for n in range(20)]
    assert {a.status_code for a in answers} == {202}


async def test_the_default_limit_lets_a_busy_conversation_through():
    ingest = Ingest()
    async with ingest.client() as http:
        answers = [await http.post("/v1/inbound/chat", content=json.dumps(chat("v-1", n)), headers=JSON)
                   for n in range(30)]
    assert {a.status_code for a in answers} == {202}


def test_the_limit_is_read_from_the_environment(monkeypatch):
    from services.ingest.settings import IngestSettings

    monkeypatch.setenv("INGEST_RATE_LIMIT_PER_MIN", "30")
    monkeypatch.setenv("INGEST_RATE_LIMIT_BURST", "5")
    settings = IngestSettings()
    assert (settings.rate_limit_per_min, settings.rate_limit_burst) == (30, 5)
