"""Export and erasure of one customer over the real stack: a mail with attachments and an SMS from one
person (their profiles merged by an admin), a reply mailed to them, routing and SLA at work; the export
holds it all; after the erasure the profile is gone, `deskstream.customer.erased` is on
`tickets.events`, and no document of any collection on the MongoDB-wire server holds their address,
number or name — while another customer's tickets and the file they share are untouched."""
from __future__ import annotations

import hashlib
import os
import uuid
from email.message import EmailMessage

import pytest
from bson.raw_bson import RawBSONDocument
from bson.codec_options import CodecOptions
from pymongo import MongoClient

from tests.e2e.helpers import poll, post_and_file, read_topic, run

pytestmark = pytest.mark.e2e

TERMS = b"%PDF-1.4\nGeneral terms of sale, shared by everyone who forwards them.\n"


def filed(stack, path: str, **body) -> dict:
    """Post to an inbound door and wait until the message is filed: the ticket it went to."""
    return post_and_file(stack, path, **body)[1]


def mail(sender: str, subject: str, text: str, files: list[tuple[str, bytes]]) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, "help@shop.example", subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example.com>"
    message.set_content(text)
    for filename, data in files:
        message.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return message.as_bytes()


def holding(stack, *needles: str) -> list[str]:
    """Every document of every collection of the stack's database that holds one of `needles` (any case,
    in any field, binary ones included): `collection/_id: needle`."""
    client = MongoClient(os.environ["MONGODB_URL"], serverSelectionTimeoutMS=5000)
    try:
        db = client[stack.database]
        raw = CodecOptions(document_class=RawBSONDocument)
        found = []
        for name in db.list_collection_names():
            for doc in db.get_collection(name, codec_options=raw).find({}):
                text = doc.raw.lower()
                found += [f"{name}/{doc['_id']}: {n}" for n in needles if n.lower().encode() in text]
        return found
    finally:
        client.close()


def test_a_customer_is_exported_then_erased_everywhere_and_another_customer_keeps_everything(stack, agent, mailbox):
    n = uuid.uuid4().hex[:8]
    name, address = f"Zahra Qasimi{n}", f"zahra.{n}@example.com"
    phone = "+9665" + str(uuid.uuid4().int)[:8]
    invoice = f"%PDF-1.4\nInvoice {n} for {name}, {address}\n".encode()

    by_mail = filed(stack, "/v1/inbound/email", content=mail(
        f"{name} <{address}>", f"Order {n} arrived broken", "The vase was broken, see the invoice.",
        [(f"invoice-{n}.pdf", invoice), ("terms.pdf", TERMS)]), headers={"content-type": "message/rfc822"})
    by_sms = filed(stack, "/v1/inbound/sms", data={"MessageSid": f"SM{uuid.uuid4().hex}", "From": phone,
                                                   "To": "+15005550006", "Body": f"Any news on order {n}?",
                                                   "NumMedia": "0"})
    other_address = f"omar.{n}@example.com"
    other = filed(stack, "/v1/inbound/email", content=mail(
        f"Omar Haddad <{other_address}>", "Terms question", "Do these terms apply to me?", [("terms.pdf", TERMS)]),
        headers={"content-type": "message/rfc822"})
    customer, by_phone = by_mail["customer"]["id"], by_sms["customer"]["id"]

    with stack.client("tickets") as tickets:
        r = tickets.post(f"/v1/customers/{customer}/merge", json={"customer_id": by_phone})
        assert r.status_code == 200, r.text
        r = tickets.post(f"/v1/tickets/{by_mail['id']}/replies",
                         json={"agent_id": agent, "text": f"Sorry {name}, a new vase is on its way."})
        assert r.status_code == 201, r.text
        sent = poll(lambda: [e for e in tickets.get(f"/v1/tickets/{by_mail['id']}").json()["timeline"]
                             if e["type"] == "delivery" and e["details"].get("state") == "sent"])
        assert sent, "the reply was never mailed"
        assert poll(lambda: tickets.get(f"/v1/tickets/{by_mail['id']}").json()["assignee"]), "routing never assigned"
    assert any(address.encode() in m for m in mailbox.mails)
    with stack.client("sla") as sla:
        assert poll(lambda: sla.get(f"/v1/tickets/{by_sms['id']}/sla").status_code == 200), "no SLA clock started"
    assert holding(stack, address, phone, name), "the scan must see the customer before the erasure"

    with stack.client("tickets") as tickets:
        wrong = {"Authorization": "Bearer not-the-admin-token"}
        assert tickets.get(f"/v1/customers/{customer}/export", headers=wrong).status_code == 401
        r = tickets.get(f"/v1/customers/{by_phone}/export")
        assert r.status_code == 200, r.text
        exported = r.json()
        assert exported["customer"]["id"] == customer and by_phone in exported["customer"]["merged_ids"]
        assert {f"email:{address}", f"phone:{phone}"} <= set(exported["identities"])
        texts = {m["text"].strip() for t in exported["tickets"] for m in t["messages"]}
        assert {"The vase was broken, see the invoice.", f"Any news on order {n}?",
                f"Sorry {name}, a new vase is on its way."} <= texts
        assert {f"invoice-{n}.pdf", "terms.pdf"} <= {a["filename"] for a in exported["attachments"]}
        assert any(d["state"] == "sent" for d in exported["deliveries"])
        assert all(t["timeline"] for t in exported["tickets"])

        r = tickets.post(f"/v1/customers/{customer}/erase")
        assert r.status_code == 202, r.text
        assert r.json()["tickets"] == 2
        assert tickets.get(f"/v1/customers/{customer}").status_code == 404
        assert tickets.get(f"/v1/customers/{by_phone}").status_code == 404
        assert tickets.get(f"/v1/customers/{customer}/export").status_code == 404
        for gone in (by_mail, by_sms):
            assert tickets.get(f"/v1/tickets/{gone['id']}").status_code == 404

    def told(records):
        return any(r.get("type") == "deskstream.customer.erased" and r.get("subject") == customer for r in records)
    records = run(read_topic(stack.kafka_bootstrap, "tickets.events", until=told))
    erased = next(r for r in records if r.get("type") == "deskstream.customer.erased" and r["subject"] == customer)
    assert {by_mail["id"], by_sms["id"]} <= set(erased["data"]["ticket_ids"])
    assert erased["data"]["merged_ids"] == [by_phone]
    purged = {r["subject"]: r["data"]["reason"] for r in records if r.get("type") == "deskstream.ticket.purged"}
    assert purged.get(by_mail["id"]) == purged.get(by_sms["id"]) == "erasure"

    with stack.client("sla") as sla:
        assert poll(lambda: sla.get(f"/v1/tickets/{by_sms['id']}/sla").status_code == 404), "SLA kept its clocks"
    left = poll(lambda: not holding(stack, address, phone, phone.lstrip("+"), name), timeout=20)
    assert left, f"still held after the erasure: {holding(stack, address, phone, phone.lstrip('+'), name)}"

    with stack.client("tickets") as tickets:
        profile = tickets.get(f"/v1/customers/{other['customer']['id']}").json()
        assert other["id"] in [t["id"] for t in profile["tickets"]]
        kept = tickets.get(f"/v1/tickets/{other['id']}").json()
    assert kept["messages"][0]["text"].strip() == "Do these terms apply to me?"
    assert [a["filename"] for a in kept["messages"][0]["attachments"]] == ["terms.pdf"]
    assert holding(stack, other_address), "the other customer's data must stay"
    client = MongoClient(os.environ["MONGODB_URL"], serverSelectionTimeoutMS=5000)
    try:
        blobs = client[stack.database]["ingest_blobs"]
        assert blobs.find_one({"_id": hashlib.sha256(TERMS).hexdigest()}) is not None, "a shared file was erased"
        assert blobs.find_one({"_id": hashlib.sha256(invoice).hexdigest()}) is None
    finally:
        client.close()


def test_a_purged_ticket_takes_its_original_mail_and_files_with_it(stack):
    n = uuid.uuid4().hex[:8]
    label = f"%PDF-1.4\nReturn label {n}\n".encode()
    ticket = filed(stack, "/v1/inbound/email", content=mail(
        f"Spammer {n} <win.{n}@example.com>", "You won", "Claim your prize", [(f"label-{n}.pdf", label)]),
        headers={"content-type": "message/rfc822"})
    message = ticket["messages"][0]
    kept = [message["raw_ref"], *(a["content_ref"] for a in message["attachments"])]
    assert len(kept) == 2 and all(ref.startswith("blob:") for ref in kept)
    with stack.client("tickets") as tickets:
        assert tickets.post(f"/v1/tickets/{ticket['id']}/status", json={"status": "spam"}).status_code == 200
        assert tickets.post(f"/v1/tickets/{ticket['id']}/purge").status_code == 202
    client = MongoClient(os.environ["MONGODB_URL"], serverSelectionTimeoutMS=5000)
    try:
        blobs = client[stack.database]["ingest_blobs"]
        gone = poll(lambda: all(blobs.find_one({"_id": ref.removeprefix("blob:")}) is None for ref in kept), timeout=20)
        assert gone, "the purged ticket's files are still kept"
    finally:
        client.close()
    assert not holding(stack, f"win.{n}@example.com")
