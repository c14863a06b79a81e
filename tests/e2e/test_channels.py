"""Every inbound channel over the real stack: each sample becomes the right message on a
ticket labelled with its channel, and one person writing by web form, mail, SMS and
WhatsApp is one customer with all those identities and all those tickets."""
from __future__ import annotations

import time
import uuid
from email.message import EmailMessage

import pytest

from tests.e2e.helpers import poll

pytestmark = pytest.mark.e2e


def filed(stack, path: str, **body) -> dict:
    with stack.client("ingest", auth=False) as ingest, stack.client("tickets") as tickets:
        r = ingest.post(path, **body)
        assert r.status_code == 202, r.text
        message_id = r.json()["message_id"]
        where = poll(lambda: (lambda x: x.json() if x.status_code == 200 else None)(
            tickets.get(f"/v1/messages/{message_id}")))
        assert where, f"{path}: message {message_id} was never filed"
        ticket = tickets.get(f"/v1/tickets/{where['ticket_id']}").json()
        return {"message": next(m for m in ticket["messages"] if m["message_id"] == message_id), "ticket": ticket}


def test_one_person_on_web_form_mail_sms_and_whatsapp_is_one_customer(stack, agent):
    n = uuid.uuid4().hex[:8]
    address, phone = f"noura.{n}@example.com", "+9665" + str(uuid.uuid4().int)[:8]
    form = filed(stack, "/v1/inbound/webform", json={"name": "Noura Al-Harbi", "email": address, "phone": phone,
                                                       "subject": "Order 5512", "message": "Has my order shipped?"})
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = f"Noura <{address}>", "help@shop.example", "Invoice"
    mail["Message-ID"] = f"<{n}@mail.example.com>"
    mail.set_content("Please send the invoice for order 5512.\n\n-- \nNoura\nSent from my phone")
    by_mail = filed(stack, "/v1/inbound/email", content=mail.as_bytes(), headers={"content-type": "message/rfc822"})
    sms = filed(stack, "/v1/inbound/sms", data={"MessageSid": f"SM{uuid.uuid4().hex}", "From": phone,
                                                "To": "+15005550006", "Body": "Any news?", "NumMedia": "0"})
    wa_id = phone.lstrip("+")
    wa = filed(stack, "/v1/inbound/whatsapp", json={"object": "whatsapp_business_account", "entry": [{
        "id": "WABA1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": "1"},
            "contacts": [{"profile": {"name": "Noura"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": f"wamid.{n}", "timestamp": str(int(time.time())), "type": "text",
                          "text": {"body": "مرحبا، هل من جديد؟"}}]}}]}]})

    assert [x["ticket"]["channel"] for x in (form, by_mail, sms, wa)] == ["webform", "email", "sms", "whatsapp"]
    assert by_mail["message"]["text"].strip() == "Please send the invoice for order 5512."  # signature left out
    customers = {x["ticket"]["customer"]["id"] for x in (form, by_mail, sms, wa)}
    assert len(customers) == 1
    with stack.client("tickets") as tickets:
        profile = tickets.get(f"/v1/customers/{customers.pop()}").json()
    assert {f"email:{address}", f"phone:{phone}", f"whatsapp:{wa_id}"} <= set(profile["identities"])
    assert {x["ticket"]["id"] for x in (form, by_mail, sms, wa)} <= {t["id"] for t in profile["tickets"]}


def test_social_and_voice_become_tickets_labelled_with_their_channel(stack, agent):
    n = uuid.uuid4().hex[:8]
    social = filed(stack, "/v1/inbound/social", json={
        "network": "x", "message_id": f"post-{n}", "author": {"handle": f"@shopper{n}", "name": "Shopper"},
        "text": "@shop my parcel is two weeks late", "sent_at": "2026-11-24T10:00:00Z"})
    assert social["ticket"]["channel"] == "social" and social["message"]["text"].endswith("two weeks late")
    assert f"x:shopper{n}" in social["ticket"]["customer"]["identities"]  # handles are kept without the @
    voice = filed(stack, "/v1/inbound/voice", json={
        "call_id": f"call-{n}", "from": "+966501112233", "to": "+15550783881", "started_at": "2026-11-24T10:05:00Z",
        "duration_s": 95, "transcript": "Hello, I am calling about a refund for order 5512."})
    assert voice["ticket"]["channel"] == "voice" and "refund for order 5512" in voice["message"]["text"]
    assert "phone:+966501112233" in voice["ticket"]["customer"]["identities"]
