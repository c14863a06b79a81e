"""Routing by the language customers actually write, over the real stack: a Persian chat goes to
the Persian speaker, not the Arabic one; a Portuguese mail (with an English quoted reply under
it) goes to the Portuguese speaker, not the Spanish one.

Each test books its own agents under fresh ids and takes them offline afterwards; the languages
they speak (fa, pt) are spoken by no other agent on the shared stack, so no one else fits."""
from __future__ import annotations

import uuid
from email.message import EmailMessage

import pytest

from shared import topics
from tests.e2e.helpers import chat_message, file_chat, poll, read_topic, run

pytestmark = pytest.mark.e2e


def book(stack, agent_id: str, languages: list[str], channel: str) -> None:
    with stack.client("routing") as c:
        body = {"name": agent_id, "skills": [], "languages": languages, "channels": [channel], "capacity": 5}
        assert c.put(f"/v1/agents/{agent_id}", json=body).status_code == 200
        assert c.put(f"/v1/agents/{agent_id}/presence", json={"status": "online"}).status_code == 200


def offline(stack, *agent_ids: str) -> None:
    with stack.client("routing") as c:
        for agent_id in agent_ids:
            c.put(f"/v1/agents/{agent_id}/presence", json={"status": "offline"})


def assigned(stack, ticket_id: str) -> dict:
    def with_assignee(client) -> dict | None:
        ticket = client.get(f"/v1/tickets/{ticket_id}").json()
        return ticket if ticket.get("assignee") else None
    with stack.client("tickets") as c:
        ticket = poll(lambda: with_assignee(c))
    assert ticket, f"ticket {ticket_id} was never assigned"
    return ticket


def found(response) -> dict | None:
    return response.json() if response.status_code == 200 else None


def received(stack, message_id: str) -> dict:
    """The message as ingest published it on `ingest.messages`."""
    def payload(record: dict) -> dict:
        return record.get("data") if isinstance(record.get("data"), dict) else record
    records = run(read_topic(stack.kafka_bootstrap, topics.INGEST_MESSAGES, timeout=60,
                             until=lambda rs: any(payload(r).get("message_id") == message_id for r in rs)))
    return next(payload(r) for r in records if payload(r).get("message_id") == message_id)


def test_a_persian_chat_reaches_the_persian_speaker_ahead_of_the_arabic_one(stack, agent):
    run_id = uuid.uuid4().hex[:8]
    arabic, persian = f"lang-ar-{run_id}", f"lang-fa-{run_id}"
    book(stack, arabic, ["ar"], "chat")  # booked first and as free: the old guess (fa → ar) sent it here
    book(stack, persian, ["fa"], "chat")
    try:
        message_id, ticket_id = file_chat(stack, chat_message(
            text="سلام، سفارش من با شماره 10442 هنوز نرسیده است. لطفا پیگیری کنید"))
        ticket = assigned(stack, ticket_id)
        assert ticket["language"] == "fa"
        assert ticket["assignee"] == persian
        message = received(stack, message_id)
        assert message["language"] == "fa" and 0.5 < message["language_confidence"] <= 1
    finally:
        offline(stack, arabic, persian)


def portuguese_mail(run_id: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Joana Silva <joana.{run_id}@example.com>"
    mail["To"] = "help@shop.example"
    mail["Subject"] = "Re: Your order has shipped"
    mail["Message-ID"] = f"<pt-{run_id}@mail.example.com>"
    mail["Date"] = "Thu, 03 Dec 2026 09:00:00 +0000"
    mail.set_content(
        "Olá, a minha encomenda 558213 ainda não chegou e já passaram duas semanas. "
        "Podem verificar o que aconteceu?\n\n"
        "--\nJoana Silva\n\n"
        "On Mon, 30 Nov 2026 at 10:00, Support <help@shop.example> wrote:\n"
        "> Hello Joana, your order has been shipped and should arrive within three to five\n"
        "> working days. Please let us know if there is anything else we can do for you.\n")
    return mail.as_bytes()


def test_a_portuguese_mail_reaches_the_portuguese_speaker_not_the_spanish_one(stack, agent):
    run_id = uuid.uuid4().hex[:8]
    spanish, portuguese = f"lang-es-{run_id}", f"lang-pt-{run_id}"
    book(stack, spanish, ["es"], "email")
    book(stack, portuguese, ["pt-BR"], "email")  # booked as a tag: matched as `pt`
    try:
        with stack.client("ingest") as ingest, stack.client("tickets") as tickets:
            r = ingest.post("/v1/inbound/email", content=portuguese_mail(run_id),
                            headers={"content-type": "message/rfc822"})
            assert r.status_code == 202, r.text
            filed = poll(lambda: found(tickets.get(f"/v1/messages/{r.json()['message_id']}")))
        assert filed, "the mail was never filed"
        ticket = assigned(stack, filed["ticket_id"])
        assert ticket["language"] == "pt"
        assert ticket["assignee"] == portuguese
    finally:
        offline(stack, spanish, portuguese)
