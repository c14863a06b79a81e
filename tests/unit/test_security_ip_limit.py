"""The per-address limit at the doors: one host over it hears 429 with Retry-After before its body is
read; other hosts, loopback, the exempt networks and the signature-checked doors are not held back."""
import httpx
import pytest

from services.ingest.ratelimit import AddressLimit, RateLimited, RateLimiter
from tests.unit.test_ingest_http import BASE, JSON, Ingest
from tests.unit.test_ingest_ratelimit import Clock

VOICE = {"call_id": "c-1", "from": "+966501234567", "to": "+14155550100", "started_at": "2026-11-23T10:00:00Z",
         "duration_s": 30, "transcript": "my order?"}


def client(ingest: Ingest, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=ingest.app, client=(address, 50000)),
                             base_url=BASE)


def voice(n: int) -> dict:
    return {**VOICE, "call_id": f"c-{n}", "from": f"+9665012345{n:02d}"}  # a new sender every time


async def test_an_address_over_its_limit_gets_429_with_retry_after_even_with_new_sender_identities():
    ingest = Ingest(ip_rate_limit_per_min=60, ip_rate_limit_burst=3)
    async with client(ingest, "203.0.113.7") as flooder, client(ingest, "198.51.100.2") as neighbour:
        answers = [await flooder.post("/v1/inbound/voice", json=voice(n), headers=JSON) for n in range(4)]
        other = await neighbour.post("/v1/inbound/voice", json=voice(9), headers=JSON)
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert answers[3].headers["retry-after"] == "1"
    assert answers[3].json()["error"] == {"code": "rate_limited",
                                          "message": "too many messages from this address: retry in 1 s"}
    assert other.status_code == 202
    assert len(ingest.published) == 4


async def test_the_limit_refuses_before_the_body_is_read():
    ingest = Ingest(ip_rate_limit_per_min=60, ip_rate_limit_burst=1)
    async with client(ingest, "203.0.113.7") as flooder:
        assert (await flooder.post("/v1/inbound/email", content=b"", headers={"content-type": "message/rfc822"})
                ).status_code == 422  # read and refused: it still cost a token
        # a body over every door's size limit: a 413 if it were read
        refused = await flooder.post("/v1/inbound/email", content=b"x" * (11 * 1024 * 1024),
                                     headers={"content-type": "message/rfc822"})
    assert refused.status_code == 429


async def test_loopback_and_exempt_networks_are_not_limited_and_zero_turns_it_off():
    limited = Ingest(ip_rate_limit_per_min=60, ip_rate_limit_burst=1, ip_rate_limit_exempt="127.0.0.0/8,10.0.0.0/8")
    off = Ingest(ip_rate_limit_per_min=0)
    async with limited.client() as local, client(limited, "10.1.2.3") as relay, client(off, "203.0.113.7") as anyone:
        codes = [(await http.post("/v1/inbound/voice", json=voice(n), headers=JSON)).status_code
                 for http in (local, relay, anyone) for n in range(3)]
    assert set(codes) == {202}


async def test_signed_doors_are_not_limited_per_address_unsigned_ones_are():
    form = {"MessageSid": "SM1", "From": "+966501234567", "To": "+14155550100", "Body": "hi"}
    signed = Ingest(ip_rate_limit_per_min=60, ip_rate_limit_burst=1, twilio_auth_token="tw-secret")
    unsigned = Ingest(ip_rate_limit_per_min=60, ip_rate_limit_burst=1)
    async with client(signed, "203.0.113.7") as twilio, client(unsigned, "203.0.113.7") as anyone:
        # refused for its signature, never for its address: a provider carries everyone's messages
        assert {(await twilio.post("/v1/inbound/sms", data=form)).status_code for _ in range(3)} == {403}
        assert [(await anyone.post("/v1/inbound/sms", data={**form, "MessageSid": f"SM{n}"})).status_code
                for n in range(2)] == [202, 429]


def test_only_the_doors_count_and_the_address_is_the_clients():
    clock = Clock()
    limit = AddressLimit(RateLimiter(60, 1, clock=clock))
    door = {"type": "http", "path": "/v1/inbound/chat", "client": ("203.0.113.7", 1)}
    limit({**door, "path": "/healthz"})
    limit({**door, "path": "/healthz"})
    limit(door)
    with pytest.raises(RateLimited):
        limit(door)
    limit({**door, "client": ("::ffff:127.0.0.1", 1)})  # loopback, however it is written
    limit({**door, "client": None})
    clock.now += 1
    limit(door)


def test_the_default_is_on_and_read_from_the_environment(monkeypatch):
    from services.ingest.settings import IngestSettings

    assert IngestSettings().ip_rate_limit_per_min > 0
    monkeypatch.setenv("INGEST_IP_RATE_LIMIT_PER_MIN", "0")
    assert IngestSettings().ip_rate_limit_per_min == 0
