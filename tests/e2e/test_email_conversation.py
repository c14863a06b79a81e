"""An email conversation over the real stack: a mail in, an agent's reply out through a
real SMTP server, and the customer's answer to that reply back on the same ticket."""
from __future__ import annotations

import email
import uuid
from email.message import EmailMessage
from email.policy import default

import pytest

from tests.e2e.helpers import poll

pytestmark = pytest.mark.e2e


def customer_mail(subject: str, body: str, *, msg_id: str, in_reply_to: str | None = None,
                  references: str | None = None) -> bytes:
    mail = EmailMessage()
    mail["From"] = "Noura Al-Harbi <noura.e2e@example.com>"
    mail["To"] = "help@shop.example"
    mail["Subject"] = subject
    mail["Message-ID"] = f"<{msg_id}>"
    mail["Date"] = "Mon, 23 Nov 2026 10:00:00 +0300"
    if in_reply_to:
        mail["In-Reply-To"] = in_reply_to
    if references:
        mail["References"] = references
    mail.set_content(body)
    return mail.as_bytes()


def post_mail(stack, raw: bytes) -> str:
    with stack.client("ingest") as ingest, stack.client("tickets") as tickets:
        r = ingest.post("/v1/inbound/email", content=raw, headers={"content-type": "message/rfc822"})
        assert r.status_code == 202, r.text
        message_id = r.json()["message_id"]
        filed = poll(lambda: (lambda x: x.json() if x.status_code == 200 else None)(tickets.get(f"/v1/messages/{message_id}")))
        assert filed, "the mail was never filed"
        return filed["ticket_id"]


def test_a_reply_is_mailed_threaded_and_the_customers_answer_joins_the_ticket(stack, agent, mailbox):
    first_id = f"{uuid.uuid4().hex}@mail.example.com"
    tid = post_mail(stack, customer_mail("Order 10442 has not arrived", "Hello, where is my order?", msg_id=first_id))
    with stack.client("tickets") as tickets:
        r = tickets.post(f"/v1/tickets/{tid}/replies", json={"agent_id": agent, "text": "It ships today, sorry!"})
        assert r.status_code == 201 and r.json()["status"] == "answered"

    def our_mail():
        for raw in mailbox.mails:
            parsed = email.message_from_bytes(raw, policy=default)
            if parsed.get("X-Deskstream-Ticket") == tid:
                return parsed
        return None

    sent = poll(our_mail, timeout=30)
    assert sent, "no mail reached the SMTP server"
    assert sent["From"].addresses[0].addr_spec == "help@shop.example"
    assert sent["To"].addresses[0].addr_spec == "noura.e2e@example.com"
    assert f"[#{tid}]" in sent["Subject"] and sent["In-Reply-To"] == f"<{first_id}>"
    assert sent.get_content().strip() == "It ships today, sorry!"

    with stack.client("tickets") as tickets:
        delivered = poll(lambda: [e for e in tickets.get(f"/v1/tickets/{tid}").json()["timeline"]
                                  if e["type"] == "delivery" and e["details"]["state"] == "sent"])
    assert delivered, "the delivery result never reached the timeline"

    answer = customer_mail(f"Re: {sent['Subject']}", "Thanks! Tracking number?", msg_id=f"{uuid.uuid4().hex}@mail.example.com",
                           in_reply_to=sent["Message-ID"], references=f"<{first_id}> {sent['Message-ID']}")
    assert post_mail(stack, answer) == tid
    with stack.client("tickets") as tickets:
        ticket = tickets.get(f"/v1/tickets/{tid}").json()
    assert [m["direction"] for m in ticket["messages"]] == ["inbound", "outbound", "inbound"]
    assert ticket["status"] == "open"
