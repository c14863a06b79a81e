"""Mail as it really arrives: the sender robust parsers find, unknown senders filed, duplicates by content."""
import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pymongo.errors import BulkWriteError

from services.ingest.app import create_app
from services.ingest.channels.mail import normalise_email
from services.ingest.domain import Rejected
from services.ingest.service import IngestService
from services.ingest.settings import IngestSettings
from services.ingest.store import DUPLICATE_KEY, BlobBatcher, BlobStore
from shared.events import inbound_message_id
from tests.unit.test_ingest_http import BASE, EMAIL, Ingest, RecordingPublisher

CORPUS = Path(__file__).parents[1] / "data" / "mail"
EXPECTED: dict[str, str | None] = json.loads((CORPUS / "expected.json").read_text())
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def read(raw: bytes, **kwargs):
    return normalise_email(raw, received_at=NOW, max_blob_bytes=1_000_000, **kwargs)


def test_the_corpus_lists_every_mail_it_holds():
    assert sorted(EXPECTED) == sorted(p.name for p in CORPUS.glob("*.eml"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_ugly_mail_is_read_with_the_sender_other_parsers_find(name):
    message = read((CORPUS / name).read_bytes()).message
    identity = message.customer.identities[0]
    if EXPECTED[name] is None:
        assert (identity.kind, message.customer.name) == ("unknown", "unknown sender")
        assert not message.thread_key.startswith("email:")  # nothing a reply could be sent to
    else:
        assert (identity.kind, identity.value) == ("email", EXPECTED[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_each_ugly_mail_is_accepted_over_http(name):
    ingest = Ingest()
    async with ingest.client() as http:
        answer = await http.post("/v1/inbound/email", content=(CORPUS / name).read_bytes(), headers=EMAIL)
    assert answer.status_code == 202, answer.text
    assert len(ingest.published) == 1


def test_headers_after_a_broken_line_are_read_and_decoded():
    message = read((CORPUS / "latin1_words_broken_fold.eml").read_bytes()).message
    assert message.customer.name == "André Dupont" and message.subject == "Commande annulée"
    assert message.text == "Merci."
    colon = read((CORPUS / "space_before_colon.eml").read_bytes()).message
    assert colon.subject == "Refund for order 9981" and colon.external_id == "colon-space-1@example.com"


def test_the_envelope_sender_is_the_last_resort():
    raw = b"Subject: forwarded by a relay\r\n\r\nhello"
    assert read(raw, envelope_from="relay-user@example.org").message.customer.identities[0].value \
        == "relay-user@example.org"
    assert read(raw).message.customer.identities[0].kind == "unknown"


@pytest.mark.parametrize("raw", [b"just a line of text\n", b"two lines\nof text\n\nand more"])
def test_only_what_is_not_a_mail_is_refused(raw):
    with pytest.raises(Rejected) as refused:
        read(raw)
    assert refused.value.code == "not_a_mail"


# ------------------------------------------------------------------ duplicates by content

class Collection:
    """ingest_blobs as FerretDB answers: unique _id, duplicates reported per document."""

    def __init__(self):
        self.docs = {}

    async def insert_many(self, docs, ordered):
        errors = []
        for i, doc in enumerate(docs):
            if doc["_id"] in self.docs:
                errors.append({"index": i, "code": DUPLICATE_KEY, "errmsg": "duplicate"})
            else:
                self.docs[doc["_id"]] = doc
        if errors:
            raise BulkWriteError({"writeErrors": errors, "writeConcernErrors": []})

    async def find_one(self, query, projection=None):
        return self.docs.get(query["_id"])


class Mongo:
    def __init__(self):
        self.named = Collection()

    def collection(self, name):
        return self.named


class Publisher:
    def __init__(self):
        self.ids = []

    async def publish(self, value, key, headers):
        self.ids.append(json.loads(value)["id"])


def mail(body: str, message_id: str = "<same@example.com>", trace: str = "") -> bytes:
    return (f"{trace}From: Ana <ana@example.com>\r\nTo: support@shop.example\r\nSubject: Order\r\n"
            f"Message-ID: {message_id}\r\n\r\n{body}\r\n").encode()


@pytest.mark.parametrize("batched", [False, True])
async def test_a_redelivery_keeps_one_id_and_another_mail_reusing_a_message_id_gets_its_own(batched):
    store = BlobStore(Mongo())
    publisher = Publisher()
    service = IngestService(publisher=publisher, source="test", is_connected=lambda: True,
                            blobs=BlobBatcher(store, linger_s=0.001) if batched else store)

    async def accept(raw: bytes) -> str:
        item = read(raw)
        return await service.accept(item.message, item.blobs, item.claim)

    first = await accept(mail("My order is late."))
    again = await accept(mail("My order is late."))
    # the same mail through another door: trace headers differ, the mail does not
    relayed = await accept(mail("My order is late.", trace="Received: from mx by door\r\nReturn-Path: <a@b.c>\r\n"))
    other = await accept(mail("A different mail from a broken mailer."))
    other_again = await accept(mail("A different mail from a broken mailer."))
    # the Message-ID still leads to the message it first named (tickets threads answers by it)
    assert first == again == relayed == inbound_message_id("email", "same@example.com")
    assert other == other_again != first


async def test_two_different_mails_with_one_message_id_in_the_same_batch_stay_two():
    publisher = Publisher()
    service = IngestService(publisher=publisher, source="test", is_connected=lambda: True,
                            blobs=BlobBatcher(BlobStore(Mongo()), linger_s=0.01))
    items = [read(mail("one")), read(mail("two"))]
    ids = await asyncio.gather(*(service.accept(i.message, i.blobs, i.claim) for i in items))
    assert len(set(ids)) == 2 and inbound_message_id("email", "same@example.com") in ids


@pytest.mark.parametrize("trusted", ["", "mx.shop.example"])
async def test_over_http_a_reused_message_id_is_a_new_message_and_a_redelivery_is_not(trusted):
    publisher = RecordingPublisher()
    # claims need a store that remembers them, as FerretDB does
    service = IngestService(publisher=publisher, source="test", blobs=BlobStore(Mongo()), is_connected=lambda: True)
    app = create_app(IngestSettings(twilio_auth_token=None, meta_app_secret=None, meta_verify_token=None,
                                    public_url=BASE, trusted_authserv_ids=trusted), service=service)
    auth = "Authentication-Results: mx.shop.example; dkim=pass header.d=example.com\r\n"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        ids = [(await http.post("/v1/inbound/email", content=mail(body, trace=auth), headers=EMAIL)).json()
               ["message_id"] for body in ("first", "first", "second")]
    assert ids[0] == ids[1] == inbound_message_id("email", "same@example.com") != ids[2]
    published = [r["data"] for r in publisher.records]
    assert all(i["verified"] == bool(trusted) for r in published for i in r["customer"]["identities"])
