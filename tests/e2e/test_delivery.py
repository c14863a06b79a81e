"""Agents' replies reach customers on their channel, over the real stack: a chat widget's
event stream, Twilio and WhatsApp (local stand-ins of their APIs), a social webhook, and
mail that waits out an SMTP outage and then arrives exactly once."""
from __future__ import annotations

import asyncio
import email
import json
import time
import uuid
from email.policy import default

import httpx
import pytest

from tests.e2e.helpers import CHAT_TOKENS, chat_message, file_chat, poll
from tests.e2e.test_email_conversation import customer_mail, post_mail

pytestmark = pytest.mark.e2e


def delivery(stack, ticket_id: str, message_id: str) -> dict | None:
    with stack.client("tickets") as tickets:
        ticket = tickets.get(f"/v1/tickets/{ticket_id}").json()
    return next(m for m in ticket["messages"] if m["message_id"] == message_id)["delivery"]


def reply(stack, ticket_id: str, agent: str, text: str, **extra) -> str:
    with stack.client("tickets") as tickets:
        r = tickets.post(f"/v1/tickets/{ticket_id}/replies", json={"agent_id": agent, "text": text, **extra})
        assert r.status_code == 201, r.text
        return r.json()["message"]["message_id"]


def test_a_chat_reply_reaches_a_connected_widget_within_a_second(stack, agent):
    message = chat_message()
    _, ticket_id = file_chat(stack, message)
    session, token = message["session_id"], CHAT_TOKENS[message["session_id"]]
    stream_url = f"{stack.urls['tickets']}/v1/chat/sessions/{session}/stream"

    async def scenario():
        async with httpx.AsyncClient(timeout=10) as widget:
            async with widget.stream("GET", stream_url, params={"token": token}) as events:
                assert events.status_code == 200
                assert events.headers["content-type"].startswith("text/event-stream")
                lines = events.aiter_lines()
                await asyncio.sleep(0.3)  # the widget is connected and idle
                async with httpx.AsyncClient(base_url=stack.urls["tickets"], timeout=10,
                                             headers={"Authorization": f"Bearer {stack.token}"}) as api:
                    r = await api.post(f"/v1/tickets/{ticket_id}/replies",
                                       json={"agent_id": agent, "text": "Your parcel left the warehouse today."})
                    assert r.status_code == 201, r.text
                    replied_at = time.monotonic()
                async for line in lines:
                    if line.startswith("data:"):
                        return json.loads(line[5:]), time.monotonic() - replied_at

    pushed, latency = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert pushed["text"] == "Your parcel left the warehouse today." and pushed["direction"] == "outbound"
    assert latency < 1.0, f"the reply took {latency:.2f}s to reach the widget"
    assert poll(lambda: (delivery(stack, ticket_id, pushed["message_id"]) or {}).get("state") == "delivered")

    # the poll fallback: the whole conversation, and only with the session's chat token
    with httpx.Client(base_url=stack.urls["tickets"], headers={"Authorization": f"Bearer {token}"}) as widget:
        r = widget.get(f"/v1/chat/sessions/{session}/messages")
        assert r.status_code == 200
        assert [m["direction"] for m in r.json()["items"]] == ["inbound", "outbound"]
        after = widget.get(f"/v1/chat/sessions/{session}/messages", params={"after": pushed["message_id"]})
        assert after.json()["items"] == []
    with httpx.Client(base_url=stack.urls["tickets"]) as stranger:
        visitor = message["customer"]["visitor_id"]
        assert stranger.get(f"/v1/chat/sessions/{session}/messages", params={"visitor_id": visitor}).status_code == 403
        other_session = chat_message()
        file_chat(stack, other_session)
        other = CHAT_TOKENS[other_session["session_id"]]  # a valid token, of another session
        assert stranger.get(f"/v1/chat/sessions/{session}/messages", params={"token": other}).status_code == 403


def post_sms(stack, phone: str, text: str) -> str:
    form = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32, "From": phone,
            "To": "+15005550006", "Body": text, "NumMedia": "0"}
    with stack.client("ingest", auth=False) as ingest, stack.client("tickets") as tickets:
        r = ingest.post("/v1/inbound/sms", data=form)
        assert r.status_code == 202, r.text
        message_id = r.json()["message_id"]
        filed = poll(lambda: (lambda x: x.json() if x.status_code == 200 else None)(
            tickets.get(f"/v1/messages/{message_id}")))
        assert filed, "the SMS was never filed"
        return filed["ticket_id"]


def test_sms_and_whatsapp_replies_go_out_through_the_providers(stack, agent, providers):
    phone = "+9665" + str(uuid.uuid4().int)[:8]
    ticket_id = post_sms(stack, phone, "Is my order 5512 shipped?")
    out_id = reply(stack, ticket_id, agent, "Yes, it shipped this morning.")
    sent = poll(lambda: [m for m in providers.sms if m["to"] == phone])
    assert sent and sent[0]["body"] == "Yes, it shipped this morning." and sent[0]["from"] == "+15005550006"
    state = poll(lambda: (lambda d: d if d and d["state"] == "sent" else None)(delivery(stack, ticket_id, out_id)))
    assert state and state["provider_id"] == sent[0]["sid"]

    wa_id = phone.lstrip("+")
    webhook = {"object": "whatsapp_business_account", "entry": [{"id": "WABA1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Fatima"}, "wa_id": wa_id}],
        "messages": [{"from": wa_id, "id": f"wamid.{uuid.uuid4().hex}", "timestamp": str(int(time.time())),
                      "type": "text", "text": {"body": "And my other order?"}}]}}]}]}
    with stack.client("ingest", auth=False) as ingest, stack.client("tickets") as tickets:
        r = ingest.post("/v1/inbound/whatsapp", json=webhook)
        assert r.status_code == 202, r.text
        wa_ticket = poll(lambda: next((t["id"] for t in tickets.get("/v1/tickets", params={"channel": "whatsapp"})
                                       .json()["items"] if f"whatsapp:{wa_id}" in t["customer"]["identities"]), None))
    assert wa_ticket
    wa_out = reply(stack, wa_ticket, agent, "It arrives on Thursday.")
    got = poll(lambda: [m for m in providers.whatsapp if m["to"] == wa_id])
    assert got and got[0]["text"]["body"] == "It arrives on Thursday."
    assert poll(lambda: (delivery(stack, wa_ticket, wa_out) or {}).get("provider_id") == got[0]["id"])

    # the providers report back: Twilio's status callback, WhatsApp's statuses
    with stack.client("ingest", auth=False) as ingest:
        r = ingest.post("/v1/inbound/sms/status", data={"MessageSid": sent[0]["sid"], "MessageStatus": "delivered",
                                                         "To": phone, "From": "+15005550006"})
        assert r.status_code == 202 and r.json()["reported"] is True
        statuses = {"object": "whatsapp_business_account", "entry": [{"id": "WABA1", "changes": [{
            "field": "messages", "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "1"},
                                           "statuses": [{"id": got[0]["id"], "status": "read", "recipient_id": wa_id,
                                                         "timestamp": str(int(time.time()))}]}}]}]}
        r = ingest.post("/v1/inbound/whatsapp", json=statuses)
        assert r.status_code == 200 and r.json()["reports"] == 1
    assert poll(lambda: (delivery(stack, ticket_id, out_id) or {}).get("state") == "delivered")
    read = poll(lambda: (lambda d: d if d and d["state"] == "delivered" else None)(delivery(stack, wa_ticket, wa_out)))
    assert read and read["detail"] == "read"


def test_a_whatsapp_reply_the_provider_refuses_fails_visibly_without_retries(stack, agent, providers):
    wa_id = "9665" + str(uuid.uuid4().int)[:8]
    providers.closed_windows.add(wa_id)
    webhook = {"object": "whatsapp_business_account", "entry": [{"id": "WABA1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Omar"}, "wa_id": wa_id}],
        "messages": [{"from": wa_id, "id": f"wamid.{uuid.uuid4().hex}", "timestamp": str(int(time.time())),
                      "type": "text", "text": {"body": "Hello?"}}]}}]}]}
    with stack.client("ingest", auth=False) as ingest, stack.client("tickets") as tickets:
        assert ingest.post("/v1/inbound/whatsapp", json=webhook).status_code == 202
        ticket_id = poll(lambda: next((t["id"] for t in tickets.get("/v1/tickets", params={"channel": "whatsapp"})
                                       .json()["items"] if f"whatsapp:{wa_id}" in t["customer"]["identities"]), None))
    out_id = reply(stack, ticket_id, agent, "Sorry for the wait.")
    failed = poll(lambda: (lambda d: d if d and d["state"] == "failed" else None)(delivery(stack, ticket_id, out_id)))
    assert failed and "131047" in failed["detail"] and failed["attempts"] == 1
    with stack.client("tickets") as tickets:
        timeline = tickets.get(f"/v1/tickets/{ticket_id}").json()["timeline"]
    assert any(e["type"] == "delivery" and e["details"]["state"] == "failed" for e in timeline)


def test_with_the_smtp_server_down_a_reply_is_delivered_once_it_is_back(stack, agent, mailbox):
    first_id = f"{uuid.uuid4().hex}@mail.example.com"
    ticket_id = post_mail(stack, customer_mail("Wrong size delivered", "I ordered M, got XL.", msg_id=first_id))
    mailbox.down()
    try:
        out_id = reply(stack, ticket_id, agent, "We will swap it, a courier comes tomorrow.",
                       html="<p>We will swap it, a courier comes <b>tomorrow</b>.</p><script>alert(1)</script>")
        retrying = poll(lambda: (lambda d: d if d and d["state"] == "queued" and d["attempts"] >= 2 else None)(
            delivery(stack, ticket_id, out_id)), timeout=20)
        assert retrying, "delivery was not retried while the mail server was down"
        assert retrying["detail"] and retrying["next_attempt_at"]
    finally:
        mailbox.up()

    def ours():
        return [m for m in (email.message_from_bytes(raw, policy=default) for raw in mailbox.mails)
                if m["Message-ID"] == f"<{out_id}@shop.example>"]

    assert poll(ours, timeout=20), "the reply never arrived after the mail server came back"
    time.sleep(3)  # time for any duplicate to show up
    (mail,) = ours()
    assert mail["In-Reply-To"] == f"<{first_id}>"
    html = mail.get_body(("html",)).get_content()
    assert "<b>tomorrow</b>" in html and "<script>" not in html
    sent = delivery(stack, ticket_id, out_id)
    assert sent["state"] == "sent" and sent["attempts"] >= 2
