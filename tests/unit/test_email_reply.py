"""How an agent's reply to an email ticket looks as a mail."""
import email
from datetime import UTC, datetime
from email.policy import default

import pytest

from services.tickets.delivery.channels import SmtpMail, compose_email
from services.tickets.domain import CustomerInfo, Ticket
from shared.events import Channel, CustomerRef, Identity, MessageReceived

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def mail_ticket(**reply) -> Ticket:
    msg = MessageReceived(message_id="msg-1", channel=Channel.email, external_id="abc@mail.example.com",
                          thread_key="email:abc@mail.example.com",
                          customer=CustomerRef(name="Noura", identities=[Identity(kind="email", value="noura@example.com")]),
                          subject="Order 10442 not delivered", text="Where is it?", sent_at=T0, received_at=T0)
    customer = CustomerInfo(id="CU-1", name="Noura Al-Harbi", identities=["email:noura@example.com"])
    ticket, _ = Ticket.open_from(msg, ticket_id="TK-ABC", customer=customer, now=T0)
    ticket.reply(agent_id="layla", text="It ships today.", message_id="out_1", now=T0, **reply)
    return ticket


def test_reply_is_threaded_to_the_customers_mail_with_the_ticket_reference_in_the_subject():
    ticket = mail_ticket()
    mail = compose_email(ticket, ticket.messages[-1], "noura@example.com", support_email="support@shop.example")
    assert mail["From"] == "Customer Support <support@shop.example>"
    assert mail["To"] == "Noura Al-Harbi <noura@example.com>"
    assert mail["Subject"] == "Re: Order 10442 not delivered [#TK-ABC]"
    assert mail["In-Reply-To"] == "<abc@mail.example.com>"
    assert mail["References"] == "<abc@mail.example.com>"
    assert mail["Message-ID"] == "<out_1@shop.example>"
    assert mail.get_content().strip() == "It ships today."


def test_an_html_reply_with_a_file_is_a_proper_multipart_mail():
    ticket = mail_ticket(html="<p>It ships <b>today</b>.</p>")
    mail = compose_email(ticket, ticket.messages[-1], "noura@example.com", support_email="support@shop.example",
                         attachments=[("invoice.pdf", "application/pdf", b"%PDF-1.7 test")])
    parsed = email.message_from_bytes(mail.as_bytes(), policy=default)
    assert parsed.get_content_type() == "multipart/mixed"
    assert parsed.get_body(("plain",)).get_content().strip() == "It ships today."
    assert "<b>today</b>" in parsed.get_body(("html",)).get_content()
    files = list(parsed.iter_attachments())
    assert [(f.get_filename(), f.get_content_type(), f.get_content()) for f in files] == [
        ("invoice.pdf", "application/pdf", b"%PDF-1.7 test")]


async def _no_blobs(ref):
    return None


def test_smtp_url_is_parsed_and_bad_ones_are_refused():
    sender = SmtpMail("smtp://127.0.0.1:2525", support_email="s@x.example", blobs=_no_blobs)
    assert (sender.host, sender.port, sender.tls) == ("127.0.0.1", 2525, False)
    with pytest.raises(ValueError, match="smtp://"):
        SmtpMail("http://mail", support_email="s@x.example", blobs=_no_blobs)
