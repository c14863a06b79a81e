"""How a raw mail becomes one message: MIME, charsets, threading, quoted history, attachments, ugly input."""
import base64
import hashlib
import json
import quopri
import random
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from services.ingest.channels.mail import normalise_email
from services.ingest.domain import MAX_RECORD_BYTES, Rejected, fit_for_kafka

NOW = datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC)
BIG = 10 * 1024 * 1024


def mail(**headers) -> EmailMessage:
    msg = EmailMessage()
    defaults = {"From": "Ana López <Ana.Lopez@Example.com>", "To": "Support <support@shop.example>",
                "Subject": "Where is my order?", "Message-ID": "<a1@mail.example.com>",
                "Date": "Mon, 23 Nov 2026 09:15:00 +0300"}
    for name, value in {**defaults, **headers}.items():
        if value is not None:
            msg[name] = value
    return msg


def read(raw: bytes, **kwargs):
    return normalise_email(raw, received_at=NOW, max_blob_bytes=kwargs.get("max_blob_bytes", BIG))


def test_plain_mail_names_the_customer_subject_recipient_and_times():
    msg = mail()
    msg.set_content("Hello, my order 1234 has not arrived yet.\n")
    result = read(msg.as_bytes())
    m = result.message
    assert m.channel == "email" and m.external_id == "a1@mail.example.com"
    assert m.customer.name == "Ana López"
    assert [i.key for i in m.customer.identities] == ["email:ana.lopez@example.com"]
    assert m.subject == "Where is my order?" and m.recipient == "support@shop.example"
    assert m.text == "Hello, my order 1234 has not arrived yet."
    assert m.thread_key == "email:a1@mail.example.com"
    assert m.sent_at == datetime(2026, 11, 23, 6, 15, tzinfo=UTC) and m.received_at == NOW
    assert m.language == "en"


def test_the_original_is_kept_byte_for_byte():
    msg = mail()
    msg.set_content("Keep me.")
    raw = msg.as_bytes()
    result = read(raw)
    sha = hashlib.sha256(raw).hexdigest()
    assert result.message.raw_ref == f"blob:{sha}"
    assert {b.sha256: b.data for b in result.blobs}[sha] == raw


def test_same_mail_twice_is_one_message_and_another_message_id_is_another():
    msg = mail()
    msg.set_content("Hello")
    other = mail(**{"Message-ID": "<a2@mail.example.com>"})
    other.set_content("Hello")
    first, again = read(msg.as_bytes()).message, read(msg.as_bytes()).message
    assert first.message_id == again.message_id != read(other.as_bytes()).message.message_id
    assert first.message_id.startswith("msg_")


def test_multipart_alternative_prefers_the_plain_text_and_sanitises_the_html():
    msg = mail()
    msg.set_content("Plain version: the parcel is late.")
    msg.add_alternative('<p onclick="steal()">HTML version: the <b>parcel</b> is late.</p>'
                        '<script>alert("x")</script><a href="javascript:evil()">link</a>', subtype="html")
    m = read(msg.as_bytes()).message
    assert m.text == "Plain version: the parcel is late."
    assert "<b>parcel</b>" in m.html
    assert "script" not in m.html and "onclick" not in m.html and "javascript:" not in m.html


def test_html_only_mail_is_shown_as_readable_text_without_the_quoted_reply():
    msg = mail(Subject="Re: Order 1234")
    msg.set_content("<html><head><style>p {color: red}</style></head><body>"
                    "<div>Hi team,<br>the <b>blue</b> mug\n   arrived broken.</div><div>Thanks</div>"
                    '<div class="gmail_quote"><div>On Sun, 22 Nov 2026 at 10:00, Support '
                    "&lt;support@shop.example&gt; wrote:</div><blockquote>We shipped it.</blockquote></div>"
                    "</body></html>", subtype="html")
    m = read(msg.as_bytes()).message
    assert m.text == "Hi team,\nthe blue mug arrived broken.\nThanks"
    assert "We shipped it." in m.html  # the sanitised HTML is the whole mail


def test_attachments_and_inline_images_are_listed_hashed_and_kept():
    pdf, png = b"%PDF-1.7 invoice 1234", b"\x89PNG\r\n\x1a\nfake-image-bytes"
    msg = mail()
    msg.set_content("See the photo and the invoice.")
    msg.add_alternative('<p>See <img src="cid:photo1"> and the invoice.</p>', subtype="html")
    msg.get_payload()[1].add_related(png, maintype="image", subtype="png", cid="<photo1>", disposition="inline",
                                     filename="broken.png")
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="facture n°1234.pdf")
    result = read(msg.as_bytes())
    by_name = {a.filename: a for a in result.message.attachments}
    photo, invoice = by_name["broken.png"], by_name["facture n°1234.pdf"]
    assert photo.inline and photo.media_type == "image/png" and photo.size == len(png)
    assert photo.content_id == "photo1"  # what cid:photo1 in the HTML points at
    assert not invoice.inline and invoice.sha256 == hashlib.sha256(pdf).hexdigest()
    assert invoice.content_ref == f"blob:{invoice.sha256}"
    kept = {b.sha256: b.data for b in result.blobs}
    assert kept[photo.sha256] == png and kept[invoice.sha256] == pdf
    assert 'src="cid:photo1"' in result.message.html


def test_an_attachment_over_the_cap_is_listed_with_size_and_hash_but_not_stored():
    big = bytes(range(256)) * 40
    msg = mail()
    msg.set_content("Big file attached.")
    msg.add_attachment(big, maintype="application", subtype="octet-stream", filename="dump.bin")
    result = read(msg.as_bytes(), max_blob_bytes=5000)
    (entry,) = result.message.attachments
    assert entry.size == len(big) and entry.sha256 == hashlib.sha256(big).hexdigest()
    assert entry.content_ref is None
    assert entry.sha256 not in {b.sha256 for b in result.blobs}


def test_quoted_printable_and_base64_bodies_are_decoded():
    qp = (b"From: jo@example.de\r\nMessage-ID: <qp@x>\r\nContent-Type: text/plain; charset=utf-8\r\n"
          b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
          b"Gr=C3=BC=C3=9Fe, meine Bestellung ist nicht angekommen und das ist ein sehr lan=\r\n"
          b"ger Satz.\r\n")
    b64 = (b"From: jo@example.de\r\nMessage-ID: <b64@x>\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes("Où est ma commande ?".encode()))
    assert read(qp).message.text == "Grüße, meine Bestellung ist nicht angekommen und das ist ein sehr langer Satz."
    assert read(qp).message.language == "de"
    assert read(b64).message.text == "Où est ma commande ?"


def test_windows_1256_body_and_encoded_word_subject_are_arabic():
    body = "مرحبا، لم يصل طلبي رقم 1234 حتى الآن"
    subject = "=?windows-1256?B?" + base64.b64encode("استفسار عن الطلب".encode("cp1256")).decode() + "?="
    sender = "=?windows-1256?Q?" + quopri.encodestring("سارة".encode("cp1256"), header=True).decode() + "?="
    raw = (f"From: {sender} <sara@example.sa>\r\nTo: support@shop.example\r\nSubject: {subject}\r\n"
           "Message-ID: <ar1@example.sa>\r\nContent-Type: text/plain; charset=windows-1256\r\n"
           "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode() + quopri.encodestring(body.encode("cp1256"))
    m = read(raw).message
    assert m.text == body and m.subject == "استفسار عن الطلب" and m.customer.name == "سارة"
    assert m.language == "ar"


def test_iso_8859_6_body_and_q_encoded_subject_are_arabic():
    body = "أين طلبي؟ الشحنة متأخرة"
    encoded = quopri.encodestring("طلب متأخر".encode("iso-8859-6"), header=True).decode()
    subject = f"=?ISO-8859-6?Q?{encoded}?="
    raw = (f"From: khalid@example.sa\r\nSubject: {subject}\r\nMessage-ID: <ar2@example.sa>\r\n"
           "Content-Type: text/plain; charset=ISO-8859-6\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode() \
        + base64.encodebytes(body.encode("iso-8859-6"))
    m = read(raw).message
    assert m.text == body and m.subject == "طلب متأخر" and m.language == "ar"


def test_reply_threads_to_the_root_and_hides_quoted_history_and_signature():
    msg = mail(Subject="Re: Your order [#TK-0A1B2C3D4E5F]", **{
        "Message-ID": "<r2@mail.example.com>", "In-Reply-To": "<out-7@shop.example>",
        "References": "<first@mail.example.com> <out-7@shop.example>"})
    msg.set_content("It still has not arrived, can you check?\n\n-- \nAna López\nSent with care\n\n"
                    "On Sun, 22 Nov 2026 at 10:00, Support <support@shop.example> wrote:\n"
                    "> We shipped your order.\n> Tracking: 1Z999\n")
    m = read(msg.as_bytes()).message
    assert m.text == "It still has not arrived, can you check?"
    assert m.thread_key == "email:first@mail.example.com"
    assert m.in_reply_to == "out-7@shop.example"
    assert m.references == ["first@mail.example.com", "out-7@shop.example"]
    assert m.ticket_ref == "TK-0A1B2C3D4E5F"


def test_reply_without_references_threads_to_what_it_answers():
    msg = mail(**{"In-Reply-To": "<out-9@shop.example>"})
    msg.set_content("Thanks!")
    assert read(msg.as_bytes()).message.thread_key == "email:out-9@shop.example"


@pytest.mark.parametrize("history", [
    "-----Original Message-----\nFrom: Support\nSent: Sunday\nSubject: Your order\n\nWe shipped it.",
    "________________________________\nFrom: Support <support@shop.example>\nSent: Sunday, November 22, 2026\n"
    "To: Ana\nSubject: Your order\n\nWe shipped it.",
    "On Sun, 22 Nov 2026 at 10:00, Support <support@shop.example>\nwrote:\n\nWe shipped it.",
    "Sent from my iPhone\n\nOn 22 Nov 2026, at 10:00, Support wrote:\n> We shipped it.",
])
def test_outlook_and_mobile_reply_history_is_left_out(history):
    msg = mail(Subject="RE: Your order")
    msg.set_content(f"Please refund me instead.\n\n{history}\n")
    assert read(msg.as_bytes()).message.text == "Please refund me instead."


def test_answers_written_between_quoted_lines_are_kept():
    msg = mail()
    msg.set_content("On Sun, Support <support@shop.example> wrote:\n> Which colour?\nBlue.\n> Which size?\nLarge.\n")
    assert read(msg.as_bytes()).message.text == "Blue.\nLarge."


def test_a_forwarded_mail_is_shown_whole():
    msg = mail(Subject="Fwd: Your receipt")
    msg.set_content("See below, I was charged twice.\n\n-----Original Message-----\nFrom: Shop\nSent: Monday\n"
                    "Subject: Receipt\n\nTotal: 49.00")
    assert "Total: 49.00" in read(msg.as_bytes()).message.text


def test_missing_message_id_gets_a_content_hash_id_that_survives_a_relay():
    raw = (b"From: bob@example.com\r\nSubject: Help\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\n\r\n"
           b"My order is late.\r\n")
    relayed = b"Received: from mx2.example.net by mx.shop.example; Mon, 23 Nov 2026 08:00:03 +0000\r\n" + raw
    changed = raw.replace(b"late", b"lost")
    first, again, other = read(raw).message, read(relayed).message, read(changed).message
    assert first.external_id.startswith("derived-")
    assert first.message_id == again.message_id != other.message_id
    assert first.thread_key == f"email:{first.external_id}"


def test_missing_or_broken_date_means_the_time_it_was_received():
    for date in (None, "sometime last week"):
        msg = mail(Date=date)
        msg.set_content("Hello")
        assert read(msg.as_bytes()).message.sent_at == NOW


@pytest.mark.parametrize("raw", [
    b"Subject: no sender\r\n\r\nWho am I?",
    b"From: undisclosed\r\nSubject: x\r\n\r\nbody",
    b"From: <>\r\n\r\nbody",
])
def test_a_mail_without_a_sender_address_is_filed_for_an_unknown_sender(raw):
    customer = read(raw).message.customer
    assert customer.name == "unknown sender" and customer.identities[0].kind == "unknown"


def test_empty_body_is_refused():
    with pytest.raises(Rejected):
        read(b"  \r\n")


def test_ugly_headers_and_unknown_charsets_never_crash():
    raw = (b"From: \"Weird, Name\" <w@example.com>, other@example.com\r\n"
           b"Subject: caf\xc3\xa9 \xff raw bytes\r\nMessage-ID: plain-id@host\r\nDate: 99 Foo 2026\r\n"
           b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nhello \xe9\r\n")
    m = read(raw).message
    assert m.customer.name == "Weird, Name" and m.customer.identities[0].value == "w@example.com"
    assert m.subject.startswith("café") and m.external_id == "plain-id@host" and m.sent_at == NOW
    assert m.text.startswith("hello")
    m.model_dump_json()  # every string is valid UTF-8


def test_random_garbage_is_either_refused_or_read_never_a_crash():
    rng = random.Random(7)
    seeds = [b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n",
             b"From: a@b.example\r\nContent-Transfer-Encoding: base64\r\n\r\n", b""]
    for i in range(300):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        raw = seeds[i % 3] + junk
        try:
            read(raw).message.model_dump_json()
        except Rejected:
            pass


def test_encoded_word_filenames_are_decoded():
    raw = (b"From: a@example.com\r\nMessage-ID: <f@x>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
           b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
           b"filename=\"=?utf-8?b?" + base64.b64encode("فاتورة.pdf".encode()) + b"?=\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b"%PDF") + b"\r\n--b--\r\n")
    m = read(raw).message
    assert m.text == "See attached." and [a.filename for a in m.attachments] == ["فاتورة.pdf"]


def test_html_nested_thousands_deep_still_gives_its_text_but_no_html():
    msg = mail()
    msg.set_content("<div>" * 3000 + "Deeply nested but still a question" + "</div>" * 3000, subtype="html")
    m = read(msg.as_bytes()).message
    assert m.text == "Deeply nested but still a question" and m.html is None


@pytest.mark.parametrize("raw", [
    b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * 30_000,
    b"From: a@example.com\r\nContent-Type: multipart/mixed; " + b"p=v; " * 5000 + b"boundary=b\r\n\r\nx",
    b"From: a@example.com\r\n" + b"X-Junk: 1\r\n" * 20_000 + b"\r\nbody",
    b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    + b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1) for i in range(1500)),
])
def test_mail_built_to_make_the_parser_crawl_is_refused_quickly(raw):
    with pytest.raises(Rejected):
        read(raw)


def test_a_part_declaring_a_codec_that_cannot_replace_errors_is_still_read():
    # found by fuzzing: the stdlib decodes such a part with its declared charset and 'replace',
    # which the idna codec refuses; the mail used to be refused as "unreadable"
    raw = (b"From: ana@example.com\r\nMessage-ID: <idna@example.com>\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain; charset=idna\r\n\r\nWhere is my order? \xe9\r\n--b--\r\n")
    m = read(raw).message
    assert m.text.startswith("Where is my order?")


def test_hundreds_of_attachments_with_long_names_still_make_one_record_kafka_takes():
    # found by fuzzing: 200 parts with long type names made a record over Kafka's 1 MB, so the
    # sender got 503 and retried for ever
    kind = "application/" + "x" * 12_000
    name = "😀" * 400
    parts = b"".join(f'--b\r\nContent-Type: {kind}\r\nContent-Disposition: attachment; filename="{name}"\r\n\r\n'
                     f"x\r\n".encode() for _ in range(260))
    raw = (b"From: ana@example.com\r\nMessage-ID: <many@example.com>\r\nReferences: "
           + b" ".join(b"<%d%s@x>" % (i, b"r" * 990) for i in range(60))
           + b'\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n")
    m = fit_for_kafka(read(raw).message)
    assert len(json.dumps(m.model_dump(mode="json"))) <= MAX_RECORD_BYTES
    assert {a.media_type for a in m.attachments} == {"application/octet-stream"}  # no type is 12 KB long
    assert {a.filename for a in m.attachments} == {"😀" * 255}
    assert len(m.attachments) == 200  # MAX_ATTACHMENTS; the original keeps the rest
    assert len(m.references) == 50 and m.references[0].startswith("0r") and m.references[-1].startswith("59r")


def test_ids_longer_than_a_header_line_are_no_ids_and_addresses_longer_than_smtp_allows_are_no_sender():
    long_id = "<" + "i" * 1200 + "@example.com>"
    m = read(b"From: ana@example.com\r\nMessage-ID: " + long_id.encode() + b"\r\nIn-Reply-To: "
             + long_id.encode() + b"\r\n\r\nhello").message
    assert m.external_id.startswith("derived-") and m.in_reply_to is None
    too_long = read(b"From: " + b"a" * 300 + b"@example.com\r\n\r\nhello").message
    assert too_long.customer.identities[0].kind == "unknown"
