"""The inbound webhooks over HTTP, with a recording publisher and store: what each sender sees."""
import base64
import hashlib
import hmac
import json
import random
from email.message import EmailMessage
from urllib.parse import urlencode

import httpx
import pytest

from services.ingest.app import create_app
from services.ingest.service import IngestService
from services.ingest.settings import IngestSettings

BASE = "http://127.0.0.1:8001"


class RecordingPublisher:
    def __init__(self, fail: bool = False):
        self.records, self.fail = [], fail

    async def publish(self, value, key, headers):
        if self.fail:
            raise ConnectionError("broker gone")
        assert dict(headers)["content-type"] == b"application/cloudevents+json"
        self.records.append({"key": key, **json.loads(value)})


class MemoryBlobs:
    def __init__(self):
        self.kept = {}

    async def put_many(self, blobs):
        self.kept.update({b.sha256: b.data for b in blobs})


class Ingest:
    def __init__(self, *, fail: bool = False, connected: bool = True, **settings):
        self.publisher, self.blobs = RecordingPublisher(fail), MemoryBlobs()
        service = IngestService(publisher=self.publisher, source="test", blobs=self.blobs,
                                is_connected=lambda: connected)
        # explicit, so secrets in the shell running the tests do not change what they see
        settings = {"twilio_auth_token": None, "meta_app_secret": None, "meta_verify_token": None,
                    "public_url": BASE, **settings}
        self.app = create_app(IngestSettings(**settings), service=service)

    def client(self):
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE)

    @property
    def published(self):
        return [r["data"] for r in self.publisher.records]


def raw_mail(body="My order has not arrived.", **headers) -> bytes:
    msg = EmailMessage()
    for name, value in {"From": "Ana <ana@example.com>", "To": "support@shop.example", "Subject": "Late order",
                        "Message-ID": "<m1@example.com>", **headers}.items():
        msg[name] = value
    msg.set_content(body)
    msg.add_attachment(b"%PDF-1.7", maintype="application", subtype="pdf", filename="order.pdf")
    return msg.as_bytes()


EMAIL = {"content-type": "message/rfc822"}


async def test_email_is_accepted_with_its_original_and_attachment_stored():
    ingest = Ingest()
    raw = raw_mail()
    async with ingest.client() as http:
        first = await http.post("/v1/inbound/email", content=raw, headers=EMAIL)
        again = await http.post("/v1/inbound/email", content=raw, headers=EMAIL)
    assert first.status_code == again.status_code == 202
    assert first.json()["message_id"] == again.json()["message_id"]
    (record, _) = ingest.publisher.records
    assert record["type"] == "deskstream.message.received" and record["id"] == first.json()["message_id"]
    assert record["key"] == b"email:m1@example.com"
    message = record["data"]
    assert message["text"] == "My order has not arrived."
    assert ingest.blobs.kept[hashlib.sha256(raw).hexdigest()] == raw
    assert ingest.blobs.kept[message["attachments"][0]["sha256"]] == b"%PDF-1.7"


@pytest.mark.parametrize(("raw", "code"), [
    (b"hello, this is no mail\r\nat all\r\n", "not_a_mail"),
    (b"", "empty_message"),
    (bytes(range(256)) * 4, "not_a_mail"),
])
async def test_unusable_mail_gets_a_422_naming_the_problem(raw, code):
    ingest = Ingest()
    async with ingest.client() as http:
        answer = await http.post("/v1/inbound/email", content=raw, headers=EMAIL)
    assert answer.status_code == 422 and answer.json()["error"]["code"] == code
    assert ingest.published == []


async def test_bodies_over_the_limit_are_refused_before_parsing():
    ingest = Ingest(max_email_bytes=1000, max_json_bytes=100)
    async with ingest.client() as http:
        mail = await http.post("/v1/inbound/email", content=raw_mail("x" * 2000), headers=EMAIL)
        social = await http.post("/v1/inbound/social", content=b"{" + b" " * 200 + b"}")

        async def chunks():  # no Content-Length: counted while reading
            for _ in range(20):
                yield b"x" * 100

        streamed = await http.post("/v1/inbound/email", content=chunks(), headers=EMAIL)
    assert mail.status_code == social.status_code == streamed.status_code == 413
    assert mail.json()["error"]["code"] == "too_large" and ingest.published == []


async def test_nothing_is_acknowledged_that_kafka_did_not_take():
    for ingest in (Ingest(fail=True), Ingest(connected=False)):
        async with ingest.client() as http:
            answer = await http.post("/v1/inbound/email", content=raw_mail(), headers=EMAIL)
        assert answer.status_code == 503 and answer.headers["retry-after"]
        assert answer.json()["error"]["code"] == "unavailable"


# ------------------------------------------------------------------ SMS

SMS = {"MessageSid": "SM9f0c", "AccountSid": "AC1", "From": "+966501234567", "To": "+14155550100",
       "Body": "Where is my order?", "NumMedia": "0"}


def twilio_header(token: str, url: str, form: dict) -> str:
    # written out from Twilio's documentation, independently of services/ingest/signatures.py
    data = url
    for name in sorted(form):
        data += name + form[name]
    mac = hmac.new(token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


async def test_sms_without_a_token_configured_is_accepted():
    ingest = Ingest()
    async with ingest.client() as http:
        answer = await http.post("/v1/inbound/sms", data=SMS)
    assert answer.status_code == 202
    assert ingest.published[0]["customer"]["identities"] == [{"kind": "phone", "value": "+966501234567", "verified": False}]


async def test_sms_signature_is_required_when_a_token_is_set():
    ingest = Ingest(twilio_auth_token="tw-secret", public_url="https://support.shop.example/")
    good = twilio_header("tw-secret", "https://support.shop.example/v1/inbound/sms?site=eu", SMS)
    async with ingest.client() as http:
        missing = await http.post("/v1/inbound/sms?site=eu", data=SMS)
        wrong = await http.post("/v1/inbound/sms?site=eu", data=SMS, headers={"X-Twilio-Signature": good[::-1]})
        other_url = await http.post("/v1/inbound/sms", data=SMS, headers={"X-Twilio-Signature": good})
        valid = await http.post("/v1/inbound/sms?site=eu", data=SMS, headers={"X-Twilio-Signature": good})
    assert missing.status_code == wrong.status_code == other_url.status_code == 403
    assert missing.json()["error"]["code"] == "invalid_signature"
    assert valid.status_code == 202 and len(ingest.published) == 1


async def test_sms_from_a_number_without_country_code_is_refused_naming_the_field():
    ingest = Ingest()
    async with ingest.client() as http:
        answer = await http.post("/v1/inbound/sms", data={**SMS, "From": "0501234567"})
    assert answer.status_code == 422 and "From" in answer.json()["error"]["message"]


async def test_a_message_too_large_for_any_record_is_refused_rather_than_retried_for_ever():
    ingest = Ingest(max_json_bytes=3_000_000)
    async with ingest.client() as http:
        answer = await http.post("/v1/inbound/sms", data={**SMS, "To": "x" * 1_500_000})
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "too_large"
    assert ingest.published == []


# ------------------------------------------------------------------ WhatsApp

def hook(*messages, statuses=None) -> bytes:
    value = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881"},
             "contacts": [{"profile": {"name": "Fatima"}, "wa_id": "966501234567"}], "messages": list(messages)}
    if statuses is not None:
        value = {"messaging_product": "whatsapp", "statuses": statuses}
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]}).encode()


def text(wamid, body):
    return {"from": "966501234567", "id": wamid, "timestamp": "1795424400", "type": "text", "text": {"body": body}}


JSON = {"content-type": "application/json"}


async def test_whatsapp_webhook_with_two_messages_answers_both_ids():
    ingest = Ingest()
    async with ingest.client() as http:
        answer = await http.post("/v1/inbound/whatsapp", content=hook(text("wamid.1", "hi"), text("wamid.2", "there")),
                                 headers=JSON)
    body = answer.json()
    assert answer.status_code == 202 and body["message_id"] == body["message_ids"][0] and len(body["message_ids"]) == 2
    assert [m["text"] for m in ingest.published] == ["hi", "there"]


async def test_whatsapp_status_only_webhook_answers_200_with_no_ids():
    ingest = Ingest()
    async with ingest.client() as http:
        answer = await http.post("/v1/inbound/whatsapp", headers=JSON,
                                 content=hook(statuses=[{"id": "wamid.OUT", "status": "read"}]))
    assert answer.status_code == 200 and answer.json() == {"message_id": None, "message_ids": [], "reports": 1}
    # no message to file: only the delivery report, for the tickets service to mark the reply read
    records = ingest.publisher.records
    assert [r["type"] for r in records] == ["deskstream.message.delivery_reported"]
    assert records[0]["data"]["provider_id"] == "wamid.OUT" and records[0]["data"]["state"] == "delivered"


async def test_whatsapp_signature_is_required_when_an_app_secret_is_set():
    ingest = Ingest(meta_app_secret="meta-secret")
    body = hook(text("wamid.1", "hi"))
    good = "sha256=" + hmac.new(b"meta-secret", body, hashlib.sha256).hexdigest()
    async with ingest.client() as http:
        missing = await http.post("/v1/inbound/whatsapp", content=body, headers=JSON)
        tampered = await http.post("/v1/inbound/whatsapp", content=body.replace(b"hi", b"yo"),
                                   headers={**JSON, "X-Hub-Signature-256": good})
        valid = await http.post("/v1/inbound/whatsapp", content=body, headers={**JSON, "X-Hub-Signature-256": good})
    assert missing.status_code == tampered.status_code == 403
    assert valid.status_code == 202


async def test_whatsapp_subscription_check_echoes_the_challenge_only_with_the_verify_token():
    ingest = Ingest(meta_verify_token="verify-me")
    async with ingest.client() as http:
        good = await http.get("/v1/inbound/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "verify-me",
                                                              "hub.challenge": "1158201444"})
        bad = await http.get("/v1/inbound/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "guess",
                                                             "hub.challenge": "1"})
    assert good.status_code == 200 and good.text == "1158201444"
    assert bad.status_code == 403


# ------------------------------------------------------------------ social, web form, voice, chat

async def test_social_message_is_accepted_and_a_replay_gets_the_same_id():
    ingest = Ingest()
    payload = {"network": "instagram", "message_id": "ig-77", "author": {"handle": "@Nora.K", "name": "Nora"},
               "text": "My parcel is damaged", "sent_at": "2026-11-23T09:00:00+03:00"}
    async with ingest.client() as http:
        first = await http.post("/v1/inbound/social", json=payload)
        again = await http.post("/v1/inbound/social", json=payload)
    assert first.status_code == 202 and first.json() == again.json()
    assert ingest.published[0]["customer"]["identities"] == [{"kind": "instagram", "value": "nora.k", "verified": False}]


async def test_webform_as_json_urlencoded_and_multipart_is_one_message():
    ingest = Ingest()
    form = {"name": "Omar", "email": "omar@example.com", "subject": "Return", "message": "Please take the lamp back."}
    async with ingest.client() as http:
        as_json = await http.post("/v1/inbound/webform", json=form)
        as_form = await http.post("/v1/inbound/webform", content=urlencode(form),
                                  headers={"content-type": "application/x-www-form-urlencoded"})
        as_multipart = await http.post("/v1/inbound/webform", data=form,
                                       files={"photo": ("lamp.jpg", b"\xff\xd8jpeg", "image/jpeg")})
    ids = {r.json()["message_id"] for r in (as_json, as_form, as_multipart)}
    assert {r.status_code for r in (as_json, as_form, as_multipart)} == {202} and len(ids) == 1
    (photo,) = ingest.published[2]["attachments"]
    assert photo["filename"] == "lamp.jpg" and ingest.blobs.kept[photo["sha256"]] == b"\xff\xd8jpeg"


async def test_webform_without_a_valid_email_names_the_field():
    ingest = Ingest()
    async with ingest.client() as http:
        answer = await http.post("/v1/inbound/webform", json={"email": "not-an-address", "message": "hi"})
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["loc"] == ["body", "email"]


async def test_voice_call_is_accepted_and_a_bad_caller_number_is_named():
    ingest = Ingest()
    call = {"call_id": "CA1", "from": "+442079460958", "to": "+14155550100", "started_at": "2026-11-23T09:00:00Z",
            "duration_s": 42, "transcript": "I want to cancel my order."}
    async with ingest.client() as http:
        ok = await http.post("/v1/inbound/voice", json=call)
        bad = await http.post("/v1/inbound/voice", json={**call, "from": "07946 0958"})
    assert ok.status_code == 202 and ingest.published[0]["text"] == "I want to cancel my order."
    assert bad.status_code == 422 and bad.json()["error"]["message"].startswith("from")


async def test_chat_still_answers_as_before():
    ingest = Ingest()
    payload = {"session_id": "s-1", "message_id": "m-1", "text": "Hello",
               "customer": {"name": "Ana", "visitor_id": "v-9"}, "sent_at": "2026-11-23T10:00:00Z"}
    async with ingest.client() as http:
        ok = await http.post("/v1/inbound/chat", json=payload)
        bad = await http.post("/v1/inbound/chat", json={**payload, "sent_at": "2026-11-23T10:00:00"})
    assert ok.status_code == 202 and ok.json()["message_id"].startswith("msg_")
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["loc"] == ["body", "sent_at"]


# ------------------------------------------------------------------ nothing a client sends is a 5xx

ENDPOINTS = ["email", "chat", "sms", "whatsapp", "social", "webform", "voice"]
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                 "message/rfc822", "text/plain"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_junk_bodies_get_4xx_never_5xx(endpoint):
    ingest = Ingest()
    rng = random.Random(endpoint)
    bodies = [b"", b"null", b"[]", b"{}", b'{"a": "\\ud800"}', b"[" * 5000, b"\xff\xfe\x00", b"a=%ff&b", b"--x\r\n",
              b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {"messages": [{}]}}]}]}']
    bodies += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(20)]
    async with ingest.client() as http:
        for i, body in enumerate(bodies):
            answer = await http.post(f"/v1/inbound/{endpoint}", content=body,
                                     headers={"content-type": CONTENT_TYPES[i % len(CONTENT_TYPES)]})
            assert answer.status_code < 500, (body, answer.text)
            assert "error" in answer.json() or answer.status_code in (200, 202)
