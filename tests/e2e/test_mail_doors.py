"""Mail through ingest's SMTP door on the real stack: smtplib as the sending MTA, Kafka stopped and back."""
from __future__ import annotations

import json
import re
import smtplib
import time
import uuid
from email.message import EmailMessage

import pytest

from deploy.local import stack as stackctl
from tests.conftest import TEST_PORTS, TEST_STATE
from tests.e2e.conftest import SMTP_DOOR_PORT
from tests.e2e.helpers import poll

pytestmark = pytest.mark.e2e


def mail(subject: str, *, sender: str = "Salma <salma.smtp@example.com>") -> tuple[bytes, str]:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "help@shop.example"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.com>"
    msg.set_content(f"{subject}: the parcel never came.")
    return msg.as_bytes(), msg["Message-ID"]


def deliver(raw: bytes, *, envelope_from: str = "salma.smtp@example.com") -> tuple[int, str]:
    """(code, text) the door answered the mail with; a refused connection counts as a 4xx (the MTA retries)."""
    try:
        with smtplib.SMTP("127.0.0.1", SMTP_DOOR_PORT, timeout=30) as client:
            client.ehlo()
            client.mail(envelope_from)
            code, text = client.rcpt("help@shop.example")
            if code != 250:
                return code, text.decode()
            code, text = client.data(raw)
            return code, text.decode()
    except (ConnectionError, smtplib.SMTPServerDisconnected):
        return 421, "connection refused"


def ticket_of(tickets, message_id: str) -> str | None:
    r = tickets.get(f"/v1/messages/{message_id}")
    return r.json()["ticket_id"] if r.status_code == 200 else None


def test_a_mail_delivered_over_smtp_is_filed_once(stack, agent):
    raw, _ = mail("Order 77 missing")
    code, text = deliver(raw)
    assert code == 250, text
    again, text_again = deliver(raw)  # an MTA that lost our answer delivers again
    message_id = re.search(r"msg_\w+", text).group()
    assert again == 250 and message_id in text_again
    with stack.client("tickets") as tickets:
        ticket_id = poll(lambda: ticket_of(tickets, message_id))
        assert ticket_id, "the mail was never filed"
        ticket = tickets.get(f"/v1/tickets/{ticket_id}").json()
    assert ticket["channel"] == "email" and len(ticket["messages"]) == 1
    assert "salma.smtp@example.com" in json.dumps(ticket["customer"])


def test_a_mail_with_no_sender_anywhere_is_filed_for_an_unknown_sender(stack, agent):
    body = f"no one knows ({uuid.uuid4().hex})"  # the content is the mail's id: new on every run
    code, text = deliver(f"Subject: who wrote this?\r\nTo: help@shop.example\r\n\r\n{body}\r\n".encode(),
                         envelope_from="")
    assert code == 250, text
    with stack.client("tickets") as tickets:
        ticket_id = poll(lambda: ticket_of(tickets, re.search(r"msg_\w+", text).group()))
        assert ticket_id
        ticket = tickets.get(f"/v1/tickets/{ticket_id}").json()
        assert ticket["customer"]["name"] == "unknown sender"
        # there is no one to answer: a reply is kept on the ticket but not mailed anywhere
        r = tickets.post(f"/v1/tickets/{ticket_id}/replies", json={"agent_id": agent, "text": "Who are you?"})
        assert r.status_code == 201, r.text
        reply_id = r.json()["message"]["message_id"]

        def outcome():
            ticket = tickets.get(f"/v1/tickets/{ticket_id}").json()
            state = next(m for m in ticket["messages"] if m["message_id"] == reply_id).get("delivery") or {}
            return state.get("state") if state.get("state") not in (None, "queued") else None

        assert poll(outcome) == "not_sent"


def start_kafka_again(monkeypatch) -> None:
    """The stack's own Kafka, started again (the services were told its address as if external)."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    monkeypatch.delenv("MONGODB_URL")
    stackctl.infra_up(state_dir=TEST_STATE, quiet=True, **TEST_PORTS)


@pytest.mark.runs_last(order=5)
def test_kafka_away_is_4xx_and_back_is_250_and_nothing_answered_250_is_lost(stack, agent, infra, monkeypatch):
    if infra.kind != "local":
        pytest.skip("stops Kafka: needs the test stack's own Kafka (not DESKSTREAM_INFRA or external servers)")
    accepted = []
    for i in range(3):
        code, text = deliver(mail(f"before {i}")[0])
        assert code == 250, text
        accepted.append(re.search(r"msg_\w+", text).group())
    stack.kill("kafka")
    try:
        refused = []
        for i in range(2):
            code, text = deliver(mail(f"while kafka is away {i}")[0])
            assert code != 250 or re.search(r"msg_\w+", text), text
            if code == 250:  # acknowledged before the broker went away for this producer: it must be kept
                accepted.append(re.search(r"msg_\w+", text).group())
            else:
                refused.append(code)
        assert refused and all(400 <= c < 500 for c in refused), refused
    finally:
        start_kafka_again(monkeypatch)
    # the door answers 250 again once the producer found the broker
    deadline, code = time.monotonic() + 90, 0
    while time.monotonic() < deadline:
        code, text = deliver(mail("after kafka is back")[0])
        if code == 250:
            accepted.append(re.search(r"msg_\w+", text).group())
            break
        time.sleep(1)
    assert code == 250, "the door never answered 250 again"
    with stack.client("tickets") as tickets:
        assert poll(lambda: all(ticket_of(tickets, m) for m in accepted), timeout=90), "a mail answered 250 was lost"


def test_another_mail_reusing_a_message_id_is_a_message_of_its_own_and_answers_thread_onto_the_first(stack, agent):
    reused = f"<{uuid.uuid4().hex}@broken-mailer.example>"

    def written(body: str) -> bytes:
        msg = EmailMessage()
        msg["From"] = "Salma <salma.smtp@example.com>"
        msg["To"] = "help@shop.example"
        msg["Subject"] = "Broken mailer"
        msg["Message-ID"] = reused
        msg.set_content(body)
        return msg.as_bytes()

    ids = []
    for raw in (written("first mail"), written("second, different mail"), written("first mail")):
        code, text = deliver(raw)
        assert code == 250, text
        ids.append(re.search(r"msg_\w+", text).group())
    assert ids[0] == ids[2] != ids[1]
    answer = EmailMessage()
    answer["From"] = "Salma <salma.smtp@example.com>"
    answer["To"] = "help@shop.example"
    answer["Subject"] = "Re: Broken mailer"
    answer["Message-ID"] = f"<{uuid.uuid4().hex}@example.com>"
    answer["In-Reply-To"] = reused
    answer.set_content("and one more thing")
    code, text = deliver(answer.as_bytes())
    assert code == 250, text
    with stack.client("tickets") as tickets:
        assert poll(lambda: all(ticket_of(tickets, m) for m in ids[:2]))
        first = ticket_of(tickets, ids[0])
        assert poll(lambda: ticket_of(tickets, re.search(r"msg_\w+", text).group()) == first)
