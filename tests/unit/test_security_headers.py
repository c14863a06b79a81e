"""Line breaks in header values: taken out at ingest (every channel), and again when a reply is
written as a mail; a mail that still cannot be written fails for good instead of being retried."""
import email
from email.policy import default

import pytest

from services.ingest.channels.mail import normalise_email
from services.ingest.channels.mailheaders import addresses, first_id, message_ids
from services.ingest.domain import file_name
from services.tickets.delivery.channels import Outgoing, SmtpMail, Undeliverable, compose_email
from shared.headers import one_line
from tests.unit.test_email_reply import mail_ticket
from tests.unit.test_ingest_email import BIG, NOW
from tests.unit.test_ingest_http import JSON, Ingest


def raw(*headers: str) -> bytes:
    return ("\r\n".join(["To: help@shop.example", "Date: Mon, 23 Nov 2026 10:00:00 +0300", *headers])
            + "\r\n\r\nWhere is my order?\r\n").encode()


@pytest.mark.parametrize("text, line", [
    ("a\nb", "a b"), ("a\r\n\r\nb", "a b"), ("\x00a\x07b\t", "a b"), ("a\u2028b\x85c", "a b c"),
    ("نورة\u200f Ana", "نورة\u200f Ana"),  # bidi marks and other letters stay
    ("plain", "plain"),
])
def test_one_line_turns_each_run_of_breaks_and_control_characters_into_a_space(text, line):
    assert one_line(text) == line


def test_an_encoded_line_break_in_a_subject_or_a_senders_name_is_read_as_a_space():
    message = normalise_email(raw("From: =?utf-8?q?Noura=0D=0ABcc=3A_x=40evil=2Eexample?= <noura@example.com>",
                                  "Subject: =?utf-8?q?Order_10442=0Ahas_not_arrived?=",
                                  "Message-ID: <m1@mail.example.com>"),
                              received_at=NOW, max_blob_bytes=BIG).message
    assert message.subject == "Order 10442 has not arrived"
    assert message.customer.name == "Noura Bcc: x@evil.example"
    assert [i.value for i in message.customer.identities] == ["noura@example.com"]


def test_ids_and_addresses_with_control_characters_are_no_ids_and_no_addresses():
    assert message_ids("<a\x01b@x> <ok@x>") == ["ok@x"]
    assert first_id("bare\x0bid@x") is None and first_id("bare-id@x") == "bare-id@x"
    assert addresses("Ana <an\x7fa@example.com>, Bo <bo@example.com>") == [("Bo", "bo@example.com")]
    assert file_name("invoice\r\n.pdf") == "invoice .pdf"


async def test_a_name_or_subject_with_a_line_break_from_any_channel_is_published_on_one_line():
    ingest = Ingest()
    post = {"network": "x", "message_id": "p-1", "author": {"handle": "@noura", "name": "Noura\r\nAl-Harbi"},
            "text": "my order?", "sent_at": "2026-11-23T10:00:00Z"}
    async with ingest.client() as http:
        assert (await http.post("/v1/inbound/social", json=post, headers=JSON)).status_code == 202
    assert ingest.published[0]["customer"]["name"] == "Noura Al-Harbi"


def test_a_reply_to_a_ticket_stored_with_line_breaks_is_still_a_mail_with_one_line_headers():
    ticket = mail_ticket()
    ticket.subject = "Order 10442\nnot delivered"  # as ingest kept it before line breaks were taken out
    ticket.customer.name = "Noura\r\nBcc: spy@evil.example"
    ticket.messages[0].external_id = "abc@mail.example.com\r\nX-Evil: 1"
    mail = compose_email(ticket, ticket.messages[-1], "noura@example.com", support_email="support@shop.example")
    parsed = email.message_from_bytes(mail.as_bytes(), policy=default)
    assert parsed["Subject"] == "Re: Order 10442 not delivered [#TK-ABC]"
    assert [a.addr_spec for a in parsed["To"].addresses] == ["noura@example.com"]
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None and parsed["In-Reply-To"] is None


async def test_a_reply_that_cannot_be_written_as_a_mail_is_undeliverable_not_retried():
    async def no_blobs(ref):
        return None

    ticket = mail_ticket()
    smtp = SmtpMail("smtp://127.0.0.1:9", support_email="support@shop.example", blobs=no_blobs)
    out = Outgoing(ticket=ticket, message=ticket.messages[-1], to="noura@example.com\nBcc: spy@evil.example",
                   idempotency_key="out_1")
    with pytest.raises(Undeliverable, match="cannot be written as a mail"):
        await smtp.send(out)  # refused before any connection: port 9 is never tried
