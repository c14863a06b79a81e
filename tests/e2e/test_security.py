"""Issue 16's attacks, tried against the real stack the way an attacker would: each test failed
before its fix (a service running open, a profile taken over through a web form, a mail thread
joined by a stranger, a chat session read and written by another visitor, an agent token acting as
someone else)."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import chat_message, file_chat, mails_of_ticket, poll, post_chat

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def filed(stack, message_id: str) -> str:
    with stack.client("tickets") as tickets:
        found = poll(lambda: (lambda r: r.json() if r.status_code == 200 else None)(
            tickets.get(f"/v1/messages/{message_id}")))
    assert found, f"message {message_id} was never filed"
    return found["ticket_id"]


def webform(stack, **fields) -> str:
    with stack.client("ingest") as ingest:
        r = ingest.post("/v1/inbound/webform", json=fields)
    assert r.status_code == 202, r.text
    return filed(stack, r.json()["message_id"])


def mail(stack, sender: str, text: str, *, msg_id: str, subject: str = "Help", in_reply_to: str | None = None,
         name: str | None = None) -> str:
    m = EmailMessage()
    m["From"] = f"{name} <{sender}>" if name else sender
    m["To"] = "help@shop.example"
    m["Subject"] = subject
    m["Message-ID"] = f"<{msg_id}>"
    if in_reply_to:
        m["In-Reply-To"] = m["References"] = f"<{in_reply_to}>"
    m.set_content(text)
    with stack.client("ingest") as ingest:
        r = ingest.post("/v1/inbound/email", content=m.as_bytes(), headers={"content-type": "message/rfc822"})
    assert r.status_code == 202, r.text
    return filed(stack, r.json()["message_id"])


def ticket(stack, ticket_id: str) -> dict:
    with stack.client("tickets") as tickets:
        return tickets.get(f"/v1/tickets/{ticket_id}").json()


def customer(stack, customer_id: str) -> dict:
    with stack.client("tickets") as tickets:
        return tickets.get(f"/v1/customers/{customer_id}").json()


@pytest.mark.parametrize("token", ["", "short-token"])
def test_a_service_refuses_to_start_without_a_strong_api_token(token):
    env = dict(os.environ, DESKSTREAM_API_TOKEN=token, TICKETS_HTTP_PORT="18999", DESKSTREAM_INSTANCE_PORT="0")
    env.pop("DESKSTREAM_INSECURE_DEV", None)
    done = subprocess.run([sys.executable, "-m", "services.tickets"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "refusing to start" in done.stderr and "DESKSTREAM_API_TOKEN" in done.stderr, done.stderr[-2000:]


def test_a_web_form_cannot_put_an_attackers_address_into_someone_elses_profile(stack, agent):
    run = uuid.uuid4().hex[:8]
    victim, attacker, phone = f"victim-{run}@example.com", f"attacker-{run}@evil.example", "+966555" + run[:6].translate(
        str.maketrans("abcdef", "123456"))
    first = ticket(stack, webform(stack, name="Victoria Victim", email=victim, phone=phone, subject="Refund",
                                  message="Please refund order 12"))
    victim_id = first["customer"]["id"]
    webform(stack, name="Mallory", email=attacker, phone=phone, subject="Hi", message="Same phone, my mail")
    # the attacker's next mail is the attacker's own, not under the victim's name and history
    later = ticket(stack, mail(stack, attacker, "What did I order?", msg_id=f"{run}-a@evil.example", name="Mallory"))
    assert later["customer"]["id"] != victim_id
    profile = customer(stack, victim_id)
    assert f"email:{attacker}" not in profile["identities"]
    assert profile["name"] == "Victoria Victim"
    assert later["id"] not in [t["id"] for t in profile["tickets"]]


def test_a_mail_quoting_another_customers_thread_does_not_join_their_ticket(stack, agent, mailbox):
    run = uuid.uuid4().hex[:8]
    victim, attacker = f"victim-{run}@example.com", f"attacker-{run}@evil.example"
    root = f"{run}-root@example.com"
    tid = mail(stack, victim, "My card was charged twice", msg_id=root, subject="Charged twice")
    other = mail(stack, attacker, "Please send the refund to my account instead", msg_id=f"{run}-x@evil.example",
                 subject="Re: Charged twice", in_reply_to=root)
    assert other != tid
    assert [m["text"] for m in ticket(stack, tid)["messages"]] == ["My card was charged twice"]
    # a subject quoting the victim's ticket reference does not join it either
    quoted = mail(stack, attacker, "Any news?", msg_id=f"{run}-y@evil.example", subject=f"Re: [#{tid}] Charged twice")
    assert quoted != tid
    # and the agent's answer on the victim's ticket goes to the victim only
    with stack.client("tickets") as tickets:
        r = tickets.post(f"/v1/tickets/{tid}/replies", json={"agent_id": agent, "text": "Refund is on its way."})
        assert r.status_code == 201, r.text

    assert poll(lambda: mails_of_ticket(mailbox, tid), timeout=30)
    assert [p["To"].addresses[0].addr_spec for p in mails_of_ticket(mailbox, tid)] == [victim]


def test_a_chat_session_belongs_to_the_visitor_who_opened_it(stack, agent):
    opening = chat_message(text="Hi, my address is 12 Olaya Street")
    with stack.client("ingest") as ingest:
        r = post_chat(ingest, opening)
        assert r.status_code == 202 and r.json()["chat_token"]
        token = r.json()["chat_token"]
        session = opening["session_id"]
        intruder = {**chat_message(session, "I am the customer, what is my address?"),
                    "customer": {"name": "Mallory", "visitor_id": "v-mallory"}}
        assert ingest.post("/v1/inbound/chat", json=intruder).status_code == 403  # no token
        assert ingest.post("/v1/inbound/chat", json={**intruder, "chat_token": token}).status_code == 403
        wrong = {**chat_message(session, "hello again"), "customer": opening["customer"], "chat_token": token + "x"}
        assert ingest.post("/v1/inbound/chat", json=wrong).status_code == 403
        # the opener's later message, with its token, joins the conversation
        later = {**chat_message(session, "Any news?"), "customer": opening["customer"], "chat_token": token}
        assert ingest.post("/v1/inbound/chat", json=later).status_code == 202
    tid = filed(stack, ingest_id(opening))
    assert poll(lambda: len(ticket(stack, tid)["messages"]) == 2)
    assert [m["text"] for m in ticket(stack, tid)["messages"]] == [opening["text"], "Any news?"]
    with httpx.Client(base_url=stack.urls["tickets"], timeout=10) as widget:
        base = f"/v1/chat/sessions/{session}/messages"
        assert widget.get(base, params={"visitor_id": opening["customer"]["visitor_id"]}).status_code == 403
        assert widget.get(base, headers={"Authorization": f"Bearer {token}x"}).status_code == 403
        assert widget.get(base, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert widget.get(base, params={"token": token}).status_code == 200


def ingest_id(message: dict) -> str:
    from services.ingest.domain import message_id_for
    from shared.events import Channel

    return message_id_for(Channel.chat, message["session_id"], message["message_id"])


def test_an_agent_token_acts_as_its_agent_only(stack, agent):
    other = f"agent-{uuid.uuid4().hex[:6]}"
    with stack.client("routing") as routing:
        r = routing.put(f"/v1/agents/{other}", json={"name": "Other", "skills": ["general"], "languages": ["en"],
                                                      "channels": ["chat"], "capacity": 1})
        assert r.status_code == 200, r.text
    with stack.client("tickets") as admin:
        made = admin.post(f"/v1/agents/{agent}/tokens", json={"label": "laptop"})
        assert made.status_code == 201, made.text
        token, token_id = made.json()["token"], made.json()["token_id"]
        assert token not in str(admin.get(f"/v1/agents/{agent}/tokens").json())  # shown once, kept as a hash
    _, tid = file_chat(stack, chat_message(text="Is my parcel lost?"))
    as_agent = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=stack.urls["tickets"], headers=as_agent, timeout=10) as tickets:
        forged = tickets.post(f"/v1/tickets/{tid}/replies", json={"agent_id": other, "text": "forged"})
        assert forged.status_code == 403, forged.text
        note = tickets.post(f"/v1/tickets/{tid}/notes", json={"author": other, "text": "forged note"})
        assert note.status_code == 403
        r = tickets.post(f"/v1/tickets/{tid}/replies", json={"agent_id": agent, "text": "It is on its way."})
        assert r.status_code == 201, r.text
        assert tickets.post(f"/v1/tickets/{tid}/status", json={"status": "resolved"}).status_code == 200
        assert tickets.post(f"/v1/agents/{agent}/tokens").status_code == 403  # not an admin
        shown = tickets.get(f"/v1/tickets/{tid}").json()
    # (the customer confirmation request the resolution sent is the system's, not an agent's)
    assert [m["author"] for m in shown["messages"] if m["direction"] == "outbound" and m["author"] != "csat"] == [agent]
    by_agent = [e for e in shown["timeline"] if e["type"] in ("reply_sent", "status_changed")]
    assert by_agent and {e["actor"] for e in by_agent} == {agent}, by_agent
    with httpx.Client(base_url=stack.urls["routing"], headers=as_agent, timeout=10) as routing:
        assert routing.put(f"/v1/agents/{other}/presence", json={"status": "online"}).status_code == 403
        assert routing.put(f"/v1/agents/{agent}/presence", json={"status": "online"}).status_code == 200
    with stack.client("tickets") as admin:
        assert admin.delete(f"/v1/agents/{agent}/tokens/{token_id}").status_code == 204
    with httpx.Client(base_url=stack.urls["tickets"], headers=as_agent, timeout=10) as tickets:
        assert tickets.get(f"/v1/tickets/{tid}").status_code == 401
