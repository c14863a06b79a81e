"""A line break hidden in a mail's encoded subject or sender name, over the real stack: the
ticket is still answered, with a reply mail whose headers are each one line."""
from __future__ import annotations

import uuid

import pytest

from tests.e2e.helpers import mails_of_ticket, poll
from tests.e2e.test_email_conversation import post_mail

pytestmark = pytest.mark.e2e


def raw_mail(*, sender: str, msg_id: str) -> bytes:
    # written by hand: the standard library refuses to write these headers, mail programs do not
    return (f"From: =?utf-8?q?Noura=0D=0ABcc=3A_spy=40evil=2Eexample?= <{sender}>\r\n"
            "To: help@shop.example\r\n"
            "Subject: =?utf-8?q?Order_10442=0Ahas_not_arrived?=\r\n"
            f"Message-ID: <{msg_id}>\r\n"
            "Date: Mon, 23 Nov 2026 10:00:00 +0300\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "\r\n"
            "Hello, where is my order?\r\n").encode()


def test_a_line_break_in_an_encoded_subject_or_name_does_not_stop_the_reply(stack, agent, mailbox):
    sender = f"noura.{uuid.uuid4().hex[:8]}@example.com"
    tid = post_mail(stack, raw_mail(sender=sender, msg_id=f"{uuid.uuid4().hex}@mail.example.com"))
    with stack.client("tickets") as tickets:
        r = tickets.post(f"/v1/tickets/{tid}/replies", json={"agent_id": agent, "text": "It ships today."})
        assert r.status_code == 201, r.text

    sent = (poll(lambda: mails_of_ticket(mailbox, tid), timeout=30) or [None])[0]
    assert sent, "the reply never reached the SMTP server"
    subject = str(sent["Subject"])
    assert subject == f"Re: Order 10442 has not arrived [#{tid}]"
    # the name's line break smuggles in no header: one recipient, the sender, under a one-line name
    assert [a.addr_spec for a in sent["To"].addresses] == [sender] and sent["Bcc"] is None
    assert sent["To"].addresses[0].display_name == "Noura Bcc: spy@evil.example"
    with stack.client("tickets") as tickets:
        assert poll(lambda: [e for e in tickets.get(f"/v1/tickets/{tid}").json()["timeline"]
                             if e["type"] == "delivery" and e["details"]["state"] == "sent"])
        assert tickets.get(f"/v1/tickets/{tid}").json()["subject"] == "Order 10442 has not arrived"
