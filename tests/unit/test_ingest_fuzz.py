"""Fuzzing every inbound endpoint over HTTP: whatever a sender posts, the answer is never a 5xx,
never an unexpected exception behind a 4xx, and what is accepted is a record Kafka takes.

Deterministic and bounded by default (they run in `make test`); `INGEST_FUZZ_SCALE=20` explores
twenty times as many examples with fresh randomness."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import quopri
import string
from urllib.parse import quote, urlencode

import httpx
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.ingest.app import create_app
from services.ingest.service import IngestService
from services.ingest.settings import IngestSettings
from shared.events import MessageReceived
from tests.unit.test_ingest_http import twilio_header

BASE = "http://127.0.0.1:8001"
KAFKA_MAX_REQUEST = 1_048_576  # aiokafka's default max_request_size: a bigger record is refused
SCALE = int(os.environ.get("INGEST_FUZZ_SCALE", "1"))


def fuzz(examples: int):
    return settings(max_examples=examples * SCALE, deadline=None, database=None, derandomize=SCALE == 1,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example])


# ------------------------------------------------------------------ the app, with a Kafka-like publisher

class KafkaLikePublisher:
    """Takes each record as the producer does (encoded JSON) and refuses one over Kafka's request
    size, as the real producer would."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    async def publish(self, encoded, key, headers):
        key.decode("utf-8")  # the key is the thread key: it must be text other services can read
        if len(encoded) + len(key) > KAFKA_MAX_REQUEST:
            raise ValueError(f"MessageSizeTooLargeError: {len(encoded)} bytes")
        self.records.append(json.loads(encoded))


class MemoryBlobs:
    async def put_many(self, blobs):
        for blob in blobs:
            assert isinstance(blob.data, bytes)


def ingest_app(**settings):
    publisher = KafkaLikePublisher()
    service = IngestService(publisher=publisher, source="fuzz", blobs=MemoryBlobs(), is_connected=lambda: True)
    # no rate limit: every example must reach the parsers (the limit has its own tests)
    settings = {"twilio_auth_token": None, "meta_app_secret": None, "meta_verify_token": None,
                "public_url": BASE, "rate_limit_per_min": 0, **settings}
    return create_app(IngestSettings(**settings), service=service), publisher


APP, PUBLISHER = ingest_app()
SIGNED_APP, SIGNED_PUBLISHER = ingest_app(twilio_auth_token="tw-fuzz", meta_app_secret="meta-fuzz")


async def post(app, path: str, body: bytes, content_type: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        return await http.post(path, content=body, headers={"content-type": content_type, **headers})


def check(answer: httpx.Response, publisher: KafkaLikePublisher, before: int) -> None:
    """What any sender may see: a 2xx with ids, or a 4xx JSON error naming a problem; a normaliser
    that raised something unexpected answers 422 `unreadable`, which is a bug here too."""
    assert answer.status_code < 500, answer.text
    body = answer.json()
    event(f"{answer.status_code} {body['error']['code'] if 'error' in body else ''}")  # --hypothesis-show-statistics
    if answer.status_code >= 400:
        assert body["error"]["code"] != "unreadable", body
        assert body["error"]["message"]
        assert len(publisher.records) == before
        return
    if "reported" in body:  # a Twilio status callback: one report or none, never a message
        assert [r["type"] for r in publisher.records[before:]] == (
            ["deskstream.message.delivery_reported"] if body["reported"] else [])
        return
    ids = body["message_ids"] if "message_ids" in body else [body["message_id"]]
    records = publisher.records[before:]
    reports = [r for r in records if r["type"] == "deskstream.message.delivery_reported"]
    published = [r for r in records if r["type"] != "deskstream.message.delivery_reported"]
    assert len(reports) == body.get("reports", 0)  # WhatsApp statuses of messages we sent
    assert [r["id"] for r in published] == ids
    for record in published:
        message = MessageReceived.model_validate(record["data"])
        assert message.text.strip() and message.customer.identities


# ------------------------------------------------------------------ strings senders send

UNICODE = st.text(st.characters(codec="utf-8"), max_size=40)
ANY_CHAR_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)  # lone surrogates included
SAMPLES = st.sampled_from([
    "", " ", "Where is my order?", "طلبي لم يصل بعد", "میرا آرڈر کہاں ہے", "मेरा ऑर्डर", "Wo ist meine Bestellung?",
    "😀" * 5, "\x00\x01\x7f", "\u202e\u200f", "<script>alert(1)</script><b>hi</b>", "=?utf-8?B?w6k=?=",
    "\r\n\r\n", "a" * 201, "ا" * 3000, "\ufeff", "null", "-1", "1e309", "NaN"])
TEXT = st.one_of(SAMPLES, UNICODE, ANY_CHAR_TEXT)


@st.composite
def big(draw, alphabet=st.sampled_from(["a", "ا", "😀", "<", " ", "\\", "x@y.z,"])):
    """A long string cheaply: one piece repeated up to 40,000 times."""
    return draw(alphabet) * draw(st.integers(0, 40_000))


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True about once in `n` draws; False is the simpler value, so shrinking leads back to valid input."""
    return st.sampled_from([False] * (n - 1) + [True])


JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
JSON_VALUE = st.recursive(JSON_SCALAR, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)


def _json_bytes(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------ email

CHARSETS = ["utf-8", "us-ascii", "windows-1256", "iso-8859-6", "iso-8859-6-i", "iso-8859-8-e", "koi8-r", "gb2312",
            "shift_jis", "utf-16", "utf-7", "latin-1", "x-unknown", "zlib", "base64", "idna", "rot13", "undefined",
            "unicode_escape", "utf-8\x00", "", '"', "a" * 300]
ENCODINGS = [None, "7bit", "8bit", "binary", "quoted-printable", "base64", "BASE64 ", "x-uuencode", "uuencode",
             "x-bogus"]
TYPES = ["text/plain", "text/html", "image/png", "application/pdf", "message/rfc822", "application/octet-stream",
         "text/calendar", "multipart/mixed", "TEXT/PLAIN", "text", "/", "x-" + "y" * 40 + "/z"]


def _in(charset: str | None, text: str) -> bytes:
    """The text in `charset` when Python can write it so, else in UTF-8."""
    try:
        return text.encode(charset or "utf-8", "replace")
    except (LookupError, ValueError, TypeError):
        return text.encode("utf-8", "surrogatepass")


@st.composite
def header_value(draw):
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return draw(TEXT)
    if kind == 1:  # an encoded word, possibly lying about its charset or encoding
        raw = _in(draw(st.sampled_from(CHARSETS)), draw(TEXT))
        payload = base64.b64encode(raw).decode() if draw(st.booleans()) else quopri.encodestring(raw).decode()
        return f"=?{draw(st.sampled_from(CHARSETS))}?{draw(st.sampled_from('BQbqX'))}?{payload[:draw(st.integers(0, 90))]}?="
    if kind == 2:  # addresses, groups and comments
        return draw(st.sampled_from([
            "Ana <ana@example.com>", "ana@example.com", '"Lo\\"pez, Ana" <a@b.c>', "<>", "undisclosed-recipients:;",
            "(" * 300 + "a" + ")" * 300 + " <a@b.c>", "a@b.c, c@d.e", '"=?windows-1256?B?x+fk?=" <r@b.c>', "@", "<@>",
            "ana@@example.com", "Group: a@b.c, c@d.e;", "\"unterminated <a@b.c>"]))
    if kind == 3:  # message ids
        return " ".join(f"<{draw(st.text(string.ascii_letters + '@.<> ', max_size=20))}>"
                        for _ in range(draw(st.integers(0, 4))))
    if kind == 4:
        return draw(big())
    if kind == 5:
        return draw(st.sampled_from(["Mon, 23 Nov 2026 09:15:00 +0300", "Mon, 32 Foo 99999 99:99:99 +9999",
                                     "0", "Tue, 1 Jan 10000 00:00:00 +0000", "1 Jan 1 00:00 -2400", "yesterday"]))
    return "\r\n\t".join(draw(st.lists(TEXT, max_size=4)))  # folded over lines


def _encode(data: bytes, cte: str | None, broken: bool) -> bytes:
    match (cte or "").strip().lower():
        case "base64":
            out = base64.encodebytes(data)
            return out[:-3] + b"!*" if broken else out
        case "quoted-printable":
            return quopri.encodestring(data) + (b"=\n=Z" if broken else b"")
        case "x-uuencode" | "uuencode":
            lines = [binascii.b2a_uu(data[i:i + 45]) for i in range(0, len(data), 45)]
            return b"begin 644 f\n" + b"".join(lines) + (b"" if broken else b"`\nend\n")
        case _:
            return data


@st.composite
def mime_leaf(draw, eol: bytes) -> bytes:
    media_type = draw(st.sampled_from(TYPES))
    charset = draw(st.sampled_from([None, *CHARSETS]))
    cte = draw(st.sampled_from(ENCODINGS))
    content = _in(charset, draw(TEXT)) if media_type.startswith(("text", "TEXT")) \
        else draw(st.binary(max_size=200))
    if media_type == "message/rfc822":
        content = eol.join([b"From: " + draw(header_value()).encode("utf-8", "replace"),
                            b"Subject: inner", b"", draw(TEXT).encode("utf-8", "replace")])
    headers = [f"Content-Type: {media_type}" + (f'; charset="{charset}"' if charset is not None else "")]
    if cte:
        headers.append(f"Content-Transfer-Encoding: {cte}")
    disposition = draw(st.sampled_from([None, "inline", "attachment", "form-data", "attachment; filename"]))
    if disposition:
        name = draw(st.one_of(TEXT, st.just("=?utf-8?B?2KfZhNmB2KfYqtmI2LHYqS5wZGY=?="), big()))
        if draw(st.booleans()):  # RFC 2231, possibly with a charset Python does not know
            headers.append(f"Content-Disposition: {disposition}; filename*={draw(st.sampled_from(CHARSETS))}''"
                           + quote(name.encode("utf-8", "surrogatepass")))
        else:
            headers.append(f'Content-Disposition: {disposition}; filename="{name}"')
    if draw(st.booleans()):
        headers.append(f"Content-ID: <{draw(st.text(string.printable, max_size=30))}>")
    head = eol.join(h.encode("utf-8", "surrogatepass") for h in headers)
    return head + eol + eol + _encode(content, cte, draw(st.booleans()))


@st.composite
def mime_part(draw, eol: bytes, depth: int = 0) -> bytes:
    if depth >= 3 or draw(st.integers(0, 2)) > 0:
        return draw(mime_leaf(eol))
    subtype = draw(st.sampled_from(["mixed", "alternative", "related", "signed", "digest", "report"]))
    boundary = draw(st.sampled_from(["b1", "=_part_0", "", "a" * 80, " spaced ", "--", '"q"']))
    used = draw(st.sampled_from(["other", "b"])) if draw(one_in(5)) else boundary
    parts = draw(st.lists(mime_part(eol, depth + 1), max_size=4))
    declared = f'boundary="{boundary}"' if draw(st.booleans()) else f"boundary={boundary}"
    out = f"Content-Type: multipart/{subtype}; {declared}".encode() + eol + eol
    out += draw(st.sampled_from([b"", b"This is a multi-part message in MIME format." + eol]))
    for part in parts:
        out += b"--" + used.encode() + eol + part + eol
    if draw(st.booleans()):
        out += b"--" + used.encode() + b"--" + eol
    return out


@st.composite
def raw_mails(draw) -> bytes:
    eol = draw(st.sampled_from([b"\r\n", b"\n", b"\r\n", b"\n", b"\r"]))
    names = ["From", "To", "Cc", "Subject", "Message-ID", "In-Reply-To", "References", "Date", "Reply-To",
             "MIME-Version", "X-Mailer", "From ", "subject", ":", "X-" + "h" * 100]
    headers = [(n, draw(header_value())) for n in draw(st.lists(st.sampled_from(names), max_size=8))]
    if not draw(one_in(4)):
        headers.insert(0, ("From", draw(st.sampled_from(["Ana <ana@example.com>", "عمر <omar@example.sa>"]))))
    head = eol.join(f"{n}: {v}".encode("utf-8", "surrogatepass") if not draw(one_in(6))
                    else _in(draw(st.sampled_from(CHARSETS)), f"{n}: {v}") for n, v in headers)
    raw = head + eol + draw(mime_part(eol))
    mutation = draw(st.integers(0, 5))
    if mutation == 1 and raw:  # cut short anywhere
        raw = raw[:draw(st.integers(0, len(raw)))]
    elif mutation == 2 and raw:  # a run of noise somewhere
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=64)) + raw[at:]
    return raw


@fuzz(150)
@given(raw=raw_mails())
async def test_fuzzed_mail_is_read_or_refused_by_name(raw):
    before = len(PUBLISHER.records)
    check(await post(APP, "/v1/inbound/email", raw, "message/rfc822"), PUBLISHER, before)


@st.composite
def mails_with_huge_headers(draw) -> bytes:
    name = draw(st.sampled_from(["From", "To", "Subject", "Message-ID", "In-Reply-To", "References", "Date",
                                 "Content-Type", "Content-Disposition", "X-Other"]))
    value = draw(st.sampled_from(["<" + "a" * 3000 + "@b>", "<a@b> ", "x@y.z, ", "ا", "=?utf-8?B?2KfZhA==?= ",
                                  "a", "; a=b", "<" + "%d@x> <" * 10]))
    value *= draw(st.integers(1, 2_000_000 // len(value)))
    lines = [b"From: Ana <ana@example.com>", b"Subject: huge", b"Message-ID: <h@example.com>",
             f"{name}: {value}".encode(), b"", b"Hello"]
    if name == "Content-Disposition":
        lines[3] = f'Content-Disposition: attachment; filename="{value}"'.encode()
    return b"\r\n".join(lines)


@fuzz(25)
@given(raw=mails_with_huge_headers())
async def test_mail_with_a_huge_header_is_read_or_refused_by_name(raw):
    before = len(PUBLISHER.records)
    check(await post(APP, "/v1/inbound/email", raw, "message/rfc822"), PUBLISHER, before)


@st.composite
def mails_with_many_attachments(draw) -> bytes:
    """Hundreds of parts with long type and file names, and a long References chain:
    the record must still fit Kafka."""
    count = draw(st.integers(1, 260))
    kind = "application/" + "x" * draw(st.integers(1, 300))
    name = draw(st.sampled_from(["a", "ا", "😀"])) * draw(st.integers(1, 400))
    content_id = "c" * draw(st.integers(1, 1200))
    references = " ".join(f"<{i}{'r' * 990}@x>" for i in range(draw(st.integers(0, 80))))
    parts = b"".join(f'--b\r\nContent-Type: {kind}\r\nContent-Disposition: attachment; filename="{name}"\r\n'
                     f"Content-ID: <{content_id}@x>\r\n\r\nx\r\n".encode() for _ in range(count))
    return (f"From: ana@example.com\r\nMessage-ID: <many@example.com>\r\nReferences: {references}\r\n"
            'Content-Type: multipart/mixed; boundary="b"\r\n\r\n').encode() + parts + b"--b--\r\n"


@fuzz(10)
@given(raw=mails_with_many_attachments())
async def test_mail_with_many_long_named_attachments_fits_kafka(raw):
    before = len(PUBLISHER.records)
    check(await post(APP, "/v1/inbound/email", raw, "message/rfc822"), PUBLISHER, before)


# ------------------------------------------------------------------ JSON channels: chat, social, voice, web form

def near(valid: dict) -> st.SearchStrategy:
    """A payload close to a valid one: each field mostly kept, else dropped, or replaced by other
    text (often still valid) or by any JSON; nested objects likewise; sometimes an extra field."""
    @st.composite
    def build(draw):
        out = {}
        for key, value in valid.items():
            action = draw(st.sampled_from(["keep"] * 16 + ["text", "text", "json", "drop"]))
            if action == "drop":
                continue
            if isinstance(value, dict):
                out[key] = draw(JSON_VALUE) if action == "json" else draw(near(value))
            elif action == "keep":
                out[key] = value
            elif action == "text":
                out[key] = draw(TEXT)
            else:
                out[key] = draw(st.one_of(JSON_VALUE, big()))
        if draw(one_in(6)):
            out[draw(TEXT)] = draw(JSON_VALUE)
        return out

    return build()


CHAT = {"session_id": "s-1", "message_id": "m-1", "text": "Hello",
        "customer": {"name": "Ana", "email": "ana@example.com", "visitor_id": "v-9"}, "sent_at": "2026-11-23T10:00:00Z"}
SOCIAL = {"network": "instagram", "message_id": "ig-1", "author": {"handle": "@nora", "name": "Nora"},
          "text": "My parcel is damaged", "in_reply_to": "ig-0", "sent_at": "2026-11-23T09:00:00+03:00"}
VOICE = {"call_id": "CA1", "from": "+442079460958", "to": "+14155550100", "started_at": "2026-11-23T09:00:00Z",
         "duration_s": 42, "transcript": "Cancel my order", "recording_url": "https://rec.example/r/CA1.mp3"}
WEBFORM = {"name": "Omar", "email": "omar@example.com", "subject": "Return", "message": "Please take it back."}


@st.composite
def json_bodies(draw, valid: dict) -> bytes:
    """Mostly near-valid payloads, so the normalisers run; else any JSON, any bytes, or JSON built to hurt."""
    kind = draw(st.sampled_from(range(10)))
    if kind < 7:
        return _json_bytes(draw(near(valid)))
    if kind == 7:
        return _json_bytes(draw(JSON_VALUE))
    if kind == 8:
        return draw(st.binary(max_size=300))
    return draw(st.sampled_from([b"[" * 100_000, b'{"a":' * 5000, b"1" * 5000, b'"\\udfff"', b"\xef\xbb\xbf{}"]))


ENDPOINT_PAYLOADS = {"chat": CHAT, "social": SOCIAL, "voice": VOICE, "webform": WEBFORM}


@fuzz(120)
@given(endpoint=st.sampled_from(sorted(ENDPOINT_PAYLOADS)), data=st.data())
async def test_fuzzed_json_channel_payloads_are_accepted_or_refused_by_name(endpoint, data):
    body = data.draw(json_bodies(ENDPOINT_PAYLOADS[endpoint]))
    content_type = data.draw(st.sampled_from(["application/json", "application/json; charset=utf-8", "", "text/x"]))
    before = len(PUBLISHER.records)
    check(await post(APP, f"/v1/inbound/{endpoint}", body, content_type), PUBLISHER, before)


@st.composite
def webform_forms(draw) -> tuple[bytes, str]:
    fields = draw(near(WEBFORM))
    text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    if draw(st.booleans()):
        body = urlencode({k.encode("utf-8", "surrogatepass"): v.encode("utf-8", "surrogatepass")
                          for k, v in text.items()}).encode()
        return body, "application/x-www-form-urlencoded"
    boundary = "fz" + draw(st.text(string.ascii_letters, max_size=10))
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in text.items()]
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.one_of(TEXT, big()))
        kind = draw(st.sampled_from(["image/jpeg", "", "x/" + "y" * 5000, "text/plain; charset=zz"]))
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="{name}"\r\n'
                     f"Content-Type: {kind}\r\n\r\nDATA\r\n")
    body = "".join(parts) + (f"--{boundary}--\r\n" if draw(st.booleans()) else "")
    return body.encode("utf-8", "surrogatepass"), f"multipart/form-data; boundary={boundary}"


@fuzz(60)
@given(form=webform_forms())
async def test_fuzzed_web_forms_are_accepted_or_refused_by_name(form):
    body, content_type = form
    before = len(PUBLISHER.records)
    check(await post(APP, "/v1/inbound/webform", body, content_type), PUBLISHER, before)


# ------------------------------------------------------------------ Twilio SMS

SMS_FIELDS = {"MessageSid": "SM9f0c", "AccountSid": "AC1", "From": "+966501234567", "To": "+14155550100",
              "Body": "Where is my order?", "NumMedia": "1", "MediaUrl0": "https://api.twilio.com/m/ME1",
              "MediaContentType0": "image/jpeg", "ProfileName": "Fatima"}
NUMBERS = st.sampled_from(["0", "1", "10", "11", "-1", " 2 ", "٣", "1e3", "99999999999999999999", "", "x"])
PHONES = st.sampled_from(["+966501234567", "whatsapp:+966501234567", "whatsapp:", "+", "+1", "0501234567",
                          "+" + "9" * 40, "+44 20 7946 0958", "+١٢٣٤٥٦٧٨", "client:ana", "+999999999999"])


@st.composite
def twilio_forms(draw) -> dict[str, str]:
    form = {}
    for key, value in SMS_FIELDS.items():
        action = draw(st.sampled_from(["keep"] * 5 + ["other", "other", "drop"]))
        if action == "drop":
            continue
        if action == "other":
            value = draw(PHONES if key in ("From", "To") else NUMBERS if key == "NumMedia" else st.one_of(TEXT, big()))
        form[key] = value
    for i in range(draw(st.integers(0, 3))):
        form[f"MediaUrl{i}"] = draw(st.one_of(TEXT, big()))
        form[f"MediaContentType{i}"] = draw(st.one_of(TEXT, big()))
    return form


def _form_bytes(form: dict[str, str]) -> bytes:
    return urlencode({k.encode("utf-8", "surrogatepass"): v.encode("utf-8", "surrogatepass")
                      for k, v in form.items()}).encode()


@fuzz(120)
@given(form=twilio_forms(), signed=st.booleans(), raw=st.one_of(st.none(), st.binary(max_size=200)))
async def test_fuzzed_twilio_posts_are_accepted_or_refused_by_name(form, signed, raw):
    body = _form_bytes(form) if raw is None else raw
    app, publisher = (SIGNED_APP, SIGNED_PUBLISHER) if signed else (APP, PUBLISHER)
    headers = {}
    if signed and raw is None:  # correctly signed, so the payload itself is what is tested
        pairs = {k.encode("utf-8", "surrogatepass").decode("utf-8", "replace"):
                 v.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for k, v in form.items()}
        headers["X-Twilio-Signature"] = twilio_header("tw-fuzz", BASE + "/v1/inbound/sms", pairs)
    before = len(publisher.records)
    answer = await post(app, "/v1/inbound/sms", body, "application/x-www-form-urlencoded", **headers)
    check(answer, publisher, before)
    if headers:
        assert answer.status_code != 403, answer.text


# ------------------------------------------------------------------ WhatsApp

@st.composite
def wa_messages(draw) -> dict:
    kind = draw(st.sampled_from(["text", "image", "document", "audio", "video", "sticker", "location",
                                 "interactive", "button", "reaction", "contacts", "unsupported", "order", ""]))
    body = {"text": {"body": "hi"}, "image": {"id": "MID", "mime_type": "image/jpeg", "caption": "c"},
            "document": {"id": "DID", "filename": "f.pdf", "mime_type": "application/pdf"},
            "location": {"latitude": 24.7, "longitude": 46.6, "name": "Home"},
            "interactive": {"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes"}},
            "button": {"text": "Track", "payload": "TRACK"}, "reaction": {"message_id": "wamid.X", "emoji": "👍"},
            }.get(kind, {})
    msg = {"from": "966501234567", "id": "wamid." + draw(st.text(string.ascii_letters, min_size=1, max_size=8)),
           "timestamp": "1795424400", "type": kind, kind or "x": body}
    msg = draw(near(msg))
    if draw(one_in(5)):
        msg["context"] = draw(st.one_of(JSON_VALUE, st.fixed_dictionaries({"id": TEXT})))
    for key in ("from", "timestamp"):
        if key in msg and draw(one_in(8)):
            msg[key] = draw(st.sampled_from(["966501234567", "+966501234567", "0", "", "1" * 40, -5, 1.5,
                                             "32503680001", 10 ** 30, "٩٦٦٥٠١٢٣٤٥٦٧", True]))
    return msg


@st.composite
def whatsapp_webhooks(draw) -> dict:
    value = {"messaging_product": "whatsapp",
             "metadata": draw(JSON_VALUE) if draw(one_in(6)) else {"display_phone_number": "15550783881"},
             "contacts": draw(st.lists(near({"wa_id": "966501234567", "profile": {"name": "Fatima"}}), max_size=2)),
             "messages": [] if draw(one_in(8)) else draw(st.lists(wa_messages(), min_size=1, max_size=4))}
    if draw(one_in(6)):
        value["statuses"] = [{"id": "wamid.OUT", "status": "read"}]
    hook = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
                                                                                      "value": value}]}]}
    return draw(near(hook)) if draw(one_in(5)) else hook


@fuzz(120)
@given(hook=whatsapp_webhooks(), signed=st.booleans())
async def test_fuzzed_whatsapp_webhooks_are_accepted_or_refused_by_name(hook, signed):
    body = _json_bytes(hook)
    app, publisher = (SIGNED_APP, SIGNED_PUBLISHER) if signed else (APP, PUBLISHER)
    headers = {"X-Hub-Signature-256": "sha256=" + hmac.new(b"meta-fuzz", body, hashlib.sha256).hexdigest()}
    before = len(publisher.records)
    answer = await post(app, "/v1/inbound/whatsapp", body, "application/json", **headers)
    check(answer, publisher, before)
    assert answer.status_code != 403, answer.text


# ------------------------------------------------------------------ every operation of the OpenAPI document

async def _without_lifespan(scope, receive, send):
    # the in-process app stays unconnected: no Kafka or MongoDB is reached from a unit test
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await APP(scope, receive, send)


@schemathesis.serializer("message/rfc822")
def _rfc822(ctx, value) -> dict:
    data = getattr(value, "data", value)  # schemathesis wraps generated bytes
    return {"data": data if isinstance(data, bytes) else str(data).encode("utf-8", "surrogatepass")}


# the WhatsApp webhook's schema allows any object in many places, which takes the generator about
# a second an example; whatsapp_webhooks() above covers that endpoint
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", _without_lifespan).include(path_regex="^/v1/inbound/") \
    .exclude(method="POST", path="/v1/inbound/whatsapp")


@SCHEMA.parametrize()
@fuzz(10)
def test_every_inbound_operation_in_the_openapi_document_answers_without_a_5xx(case):
    before = len(PUBLISHER.records)
    check(case.call(), PUBLISHER, before)
