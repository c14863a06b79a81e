"""How an agent's reply to an email ticket looks as a mail."""
from datetime import UTC, datetime

from services.tickets.delivery import SmtpSender, compose_email
from services.tickets.domain import CustomerInfo, Ticket
from shared.events import Channel, CustomerRef, Identity, MessageReceived

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def mail_ticket() -> Ticket:
    msg = MessageReceived(message_id="msg-1", channel=Channel.email, external_id="abc@mail.example.com",
                          thread_key="email:abc@mail.example.com",
                          customer=CustomerRef(name="Noura", identities=[Identity(kind="email", value="noura@example.com")]),
                          subject="Order 10442 not delivered", text="Where is it?", sent_at=T0, received_at=T0)
    customer = CustomerInfo(id="CU-1", name="Noura Al-Harbi", identities=["email:noura@example.com"])
    ticket, _ = Ticket.open_from(msg, ticket_id="TK-ABC", customer=customer, now=T0)
    ticket.reply(agent_id="layla", text="It ships today.", message_id="out_1", now=T0)
    return ticket


def test_reply_is_threaded_to_the_customers_mail_with_the_ticket_reference_in_the_subject():
    mail = compose_email(mail_ticket(), "out_1", support_email="support@shop.example", message_domain="shop.example")
    assert mail["From"] == "Customer Support <support@shop.example>"
    assert mail["To"] == "Noura Al-Harbi <noura@example.com>"
    assert mail["Subject"] == "Re: Order 10442 not delivered [#TK-ABC]"
    assert mail["In-Reply-To"] == "<abc@mail.example.com>"
    assert mail["References"] == "<abc@mail.example.com>"
    assert mail["Message-ID"] == "<out_1@shop.example>"
    assert mail.get_content().strip() == "It ships today."


def test_a_customer_without_an_address_gets_no_mail():
    ticket = mail_ticket()
    ticket.customer.identities = ["phone:+966500000001"]
    assert compose_email(ticket, "out_1", support_email="s@x.example", message_domain="x.example") is None


def test_smtp_url_is_parsed_and_bad_ones_are_refused():
    sender = SmtpSender("smtp://127.0.0.1:2525")
    assert (sender.host, sender.port, sender.tls) == ("127.0.0.1", 2525, False)
    try:
        SmtpSender("http://mail")
    except ValueError as exc:
        assert "smtp://" in str(exc)
    else:
        raise AssertionError("an http URL was accepted")
