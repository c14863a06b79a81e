"""Duplicate suspicion on the real stack (issue 19): a customer tweets about an order, then mails about the
same order — once an agent confirmed the address is theirs, the mail's ticket is marked `duplicate_of` the
tweet's within seconds, with its event and a timeline entry; the same customer's unrelated question is not.
Once an admin sets the auto-merge rule on analytics (PUT /v1/settings/duplicates), such a repeat is merged
into the tweet's ticket, with no restart."""

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


def tweet_then_mail(stack) -> tuple[dict, dict, str]:
    """A customer tweets that the kettle of an order arrived cracked, an agent attaches their mail address,
    and they mail about the same order in Arabic: (the tweet's ticket, the mail's ticket, the address)."""
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
    assert repeat["customer"]["id"] == customer_id
    return tweet, repeat, address


def test_a_mail_about_the_order_a_customer_tweeted_about_is_marked_duplicate_of_the_tweet(stack, agent):
    tweet, repeat, address = tweet_then_mail(stack)
    filed_at = time.monotonic()
    customer_id = tweet["customer"]["id"]
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


def test_above_the_admins_auto_merge_score_a_repeat_is_merged_into_the_ticket_it_repeats(stack, agent):
    with stack.client("analytics") as analytics, stack.client("analytics", auth=False) as anonymous:
        assert anonymous.put("/v1/settings/duplicates", json={"merge_above": 0.9}).status_code == 401
        assert analytics.put("/v1/settings/duplicates", json={"merge_above": 1.5}).status_code == 422
        r = analytics.put("/v1/settings/duplicates", json={"merge_above": 0.9})
        assert r.status_code == 200 and r.json() == {"suspect_above": 0.45, "merge_above": 0.9}
    try:
        time.sleep(1.0)  # every analytics process hears of the change
        tweet, _, _ = tweet_then_mail(stack)
        with stack.client("tickets") as tickets:
            # the merge can move the mail to the tweet's ticket before the mail's message is even looked up
            # (it then leads to the tweet's ticket): the merged ticket is found from the one it joined
            survivor = poll(
                lambda: (
                    lambda t: t if t.get("merged_from") and "email" in [m["channel"] for m in t["messages"]] else None
                )(tickets.get(f"/v1/tickets/{tweet['id']}").json()),
                timeout=15.0,
                interval=0.2,
            )
            assert survivor, "the mail was not merged into the tweet's ticket within 15 s of the rule being set"
            (repeat_id,) = [t for t in survivor["merged_from"] if t != tweet["id"]]
            assert survivor["status"] not in ("closed", "merged")
            merged = poll(
                lambda: (lambda t: t if t.get("merged_into") and t["status"] == "closed" else None)(
                    tickets.get(f"/v1/tickets/{repeat_id}").json()
                ),
                timeout=15.0,
                interval=0.2,
            )
            seen = tickets.get(f"/v1/tickets/{repeat_id}").json()
            assert merged, (
                f"the repeat is not shown closed and merged: { {k: seen.get(k) for k in ('status', 'duplicate_of', 'merged_into')} }"
            )
            assert merged["merged_into"] == tweet["id"] and merged["duplicate_of"]["ticket_id"] == tweet["id"]
            assert merged["duplicate_of"]["score"] >= 0.9
    finally:
        with stack.client("analytics") as analytics:
            assert analytics.put("/v1/settings/duplicates", json={"merge_above": None}).status_code == 200
