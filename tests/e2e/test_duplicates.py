"""Duplicate suspicion on the real stack (issue 19): a customer tweets about an order, then mails about the
same order — once an agent confirmed the address is theirs, the mail's ticket is marked `duplicate_of` the
tweet's within seconds, with its event and a timeline entry; the same customer's unrelated question is not."""

from __future__ import annotations

import time
import uuid
from email.message import EmailMessage

import pytest

from shared import topics
from tests.e2e.helpers import poll, post_and_file, read_topic, run

pytestmark = pytest.mark.e2e


def mail(address: str, subject: str, body: str) -> dict:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = f"Omar <{address}>", "help@shop.example", subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example.com>"
    message.set_content(body)
    return {"content": message.as_bytes(), "headers": {"content-type": "message/rfc822"}}


def test_a_mail_about_the_order_a_customer_tweeted_about_is_marked_duplicate_of_the_tweet(stack, agent):
    n = uuid.uuid4().hex[:8]
    order = str(uuid.uuid4().int)[:6]
    address = f"omar.{n}@example.com"
    _, tweet = post_and_file(
        stack,
        "/v1/inbound/social",
        json={
            "network": "x",
            "message_id": f"post-{n}",
            "author": {"handle": f"@omar{n}", "name": "Omar"},
            "text": f"@shop my kettle from order {order} arrived cracked, not happy 😡",
            "sent_at": "2026-11-24T10:00:00Z",
        },
    )
    customer_id = tweet["customer"]["id"]
    with stack.client("tickets") as tickets:
        r = tickets.post(f"/v1/customers/{customer_id}/identities", json={"identity": f"email:{address}"})
        assert r.status_code == 200, r.text

    _, repeat = post_and_file(
        stack,
        "/v1/inbound/email",
        **mail(
            address,
            f"Damaged kettle, order {order}",
            f"السلام عليكم،\n\nوصلت الغلاية مكسورة، رقم الطلب {order}.\nأرجو إفادتي بالحل.\n\nعمر",
        ),
    )
    filed_at = time.monotonic()
    assert repeat["customer"]["id"] == customer_id
    with stack.client("tickets") as tickets:
        marked = poll(
            lambda: (lambda t: t if t.get("duplicate_of") else None)(tickets.get(f"/v1/tickets/{repeat['id']}").json()),
            timeout=5.0,
            interval=0.1,
        )
    assert marked, "the mail's ticket was not marked as a duplicate within 5 s"
    assert time.monotonic() - filed_at <= 5.0
    assert marked["duplicate_of"]["ticket_id"] == tweet["id"] and 0 < marked["duplicate_of"]["score"] <= 1
    assert "duplicate_suspected" in [e["type"] for e in marked["timeline"]]
    assert marked["status"] not in ("closed", "merged")  # marked, not merged (no auto-merge rule set)

    events = run(
        read_topic(
            stack.kafka_bootstrap,
            topics.TICKETS_EVENTS,
            until=lambda rs: any(
                r.get("type") == "deskstream.ticket.duplicate_suspected" and r.get("subject") == repeat["id"]
                for r in rs
            ),
        )
    )
    (suspected,) = [
        r
        for r in events
        if r.get("type") == "deskstream.ticket.duplicate_suspected" and r.get("subject") == repeat["id"]
    ]
    assert suspected["data"]["duplicate_of"]["ticket_id"] == tweet["id"]
    assert "order" in suspected["data"]["signals"]

    # the same customer's unrelated question stays a ticket of its own
    _, question = post_and_file(
        stack,
        "/v1/inbound/email",
        **mail(address, "Store hours", "Hello, do you have a store in Riyadh where I can see the coffee machines?"),
    )
    assert question["customer"]["id"] == customer_id and question["id"] not in (tweet["id"], repeat["id"])
    with stack.client("tickets") as tickets:
        assert not poll(lambda: tickets.get(f"/v1/tickets/{question['id']}").json().get("duplicate_of"), timeout=4.0)
