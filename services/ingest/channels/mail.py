"""Email (`POST /v1/inbound/email`): one raw RFC 5322 message, read with the standard library's parser."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from typing import cast

from services.ingest.channels.mailheaders import (
    MAX_PARSED_HEADER,
    addresses,
    date_of,
    decode_words,
    first_id,
    headers_of,
    message_ids,
    repaired,
    sender_of,
    unescape,
)
from services.ingest.channels.mailtext import read_html, visible_text
from services.ingest.domain import (
    Blob,
    Normalised,
    Rejected,
    cap_name,
    cap_text,
    claim_for,
    file_name,
    media_placeholder,
    media_type_of,
    message_id_for,
)
from services.ingest.language import detect_language
from shared.events import Attachment, Channel, CustomerRef, Identity, MessageReceived

_TICKET_REF = re.compile(r"\[#(TK-[0-9A-F]{12})\]", re.IGNORECASE)
_FORWARD = re.compile(r"^\s*(fwd?|wg|tr|rv)\s*:", re.IGNORECASE)  # a forward is read whole
MAX_ATTACHMENTS = 200  # more stay in the kept original; the record must fit Kafka
MAX_REFERENCES = 50
MAX_READ = 1_000_000  # characters of body searched for the new part; ten times what `text` shows
MAX_PART_LINES = 20_000  # lines starting "--" (MIME boundaries); the parser takes ~50 µs a part
MAX_HEADER_LINES = 10_000
MAX_PARSE_WORK = 6_000_000  # ~1 µs each; a 10 MB base64 mail has ~140k lines and a few sections
_MULTIPART = re.compile(rb"(?i)content-type:\s*multipart/")
_MIME_HEADER = re.compile(rb"(?im)^content-(?:type|disposition):.*(?:\r?\n[ \t].*)*")


UNKNOWN_SENDER = "unknown sender"  # the customer of a mail without any address: no one to answer
UNKNOWN_KIND = "unknown"  # the identity kind that marks such a customer, for agents and filters


def normalise_email(
    raw: bytes, *, received_at: datetime, max_blob_bytes: int, envelope_from: str | None = None
) -> Normalised:
    """`envelope_from`: the SMTP envelope's sender, when the mail came through a door that has one."""
    if not raw.strip():
        raise Rejected("empty_message", "the body is empty: expected one raw RFC 5322 message")
    _within_limits(raw)
    readable, mbox_sender = repaired(raw)
    try:
        # compat32 keeps headers as text: parsing every part's headers into objects (the
        # default policy) makes a mail of many small parts take minutes
        msg = BytesParser(policy=policy.compat32).parsebytes(readable)
    except RecursionError:
        raise Rejected("unreadable", "the mail's MIME parts nest too deeply to read") from None
    headers = headers_of(msg)
    if not headers:  # a mail is refused only when it is not a mail at all
        raise Rejected("not_a_mail", "no header field found: expected one raw RFC 5322 message")
    found = sender_of(headers, mbox_sender, envelope_from)
    name, sender = (cap_name(found[0]), found[1]) if found else (UNKNOWN_SENDER, None)
    subject = decode_words(headers.get("subject", ""))[:1000] or None
    digest = _content_digest(headers, readable)
    given_id = first_id(headers.get("message-id"))
    own_id = given_id or f"derived-{digest}@deskstream.invalid"
    references = message_ids(headers.get("references"))
    if len(references) > MAX_REFERENCES:  # the root (first) and the latest ones matter for threading
        references = references[:1] + references[-(MAX_REFERENCES - 1) :]
    in_reply_to = first_id(headers.get("in-reply-to"))

    plain, html, attachments, blobs = _read_parts(msg, max_blob_bytes)
    clean_html, html_text = read_html(html) if html.strip() else (None, "")
    full_text = (plain.strip() or html_text)[:MAX_READ]
    text = full_text if _FORWARD.match(subject or "") else visible_text(full_text)
    text = text or media_placeholder([a.media_type for a in attachments])
    original = Blob(raw, "message/rfc822")
    if len(raw) <= max_blob_bytes:
        blobs.append(original)
    ticket_ref = _TICKET_REF.search(subject or "")
    recipients = addresses(headers.get("to"))
    thread = references[0] if references else in_reply_to or own_id
    # without an address the thread key must not look like one: replies go where it points
    identity = Identity(kind="email", value=sender) if sender else Identity(kind=UNKNOWN_KIND, value=own_id)
    message = MessageReceived(
        message_id=message_id_for(Channel.email, own_id),
        channel=Channel.email,
        external_id=own_id,
        thread_key=f"email:{thread}" if sender else f"{UNKNOWN_KIND}:{thread}",
        customer=CustomerRef(name=name, identities=[identity]),
        subject=subject,
        text=cap_text(text),
        html=clean_html,
        attachments=attachments,
        language=detect_language(f"{subject or ''}\n{text}"),
        in_reply_to=in_reply_to,
        references=references,
        ticket_ref=ticket_ref.group(1).upper() if ticket_ref else None,
        recipient=recipients[0][1] if recipients else None,
        raw_ref=original.ref if len(raw) <= max_blob_bytes else None,
        sent_at=date_of(headers.get("date")) or received_at,
        received_at=received_at,
    )
    # a Message-ID is claimed with the content's digest: another mail reusing it gets its own id
    return Normalised(message, tuple(blobs), claim_for(Channel.email, own_id, digest) if given_id else None)


# ------------------------------------------------------------------ limits and sender


def _within_limits(raw: bytes) -> None:
    """Refuses what no mail program writes but would make the parser crawl (its time grows
    with the square of a MIME header's parameters, and with the number of parts)."""
    if raw.count(b"\n--") > MAX_PART_LINES:
        raise Rejected("too_complex", f"the mail has more than {MAX_PART_LINES} MIME part boundaries")
    # the parser hands every line through each enclosing multipart: work ~ lines × nesting
    if (1 + len(_MULTIPART.findall(raw))) * raw.count(b"\n") > MAX_PARSE_WORK:
        raise Rejected("too_complex", "the mail nests too many multipart sections for its number of lines")
    end = re.search(rb"\r?\n\r?\n", raw)
    if (raw[: end.start()] if end else raw).count(b"\n") > MAX_HEADER_LINES:
        raise Rejected("too_complex", f"the mail has more than {MAX_HEADER_LINES} header lines")
    for match in _MIME_HEADER.finditer(raw):
        if len(match.group()) > MAX_PARSED_HEADER:
            raise Rejected("too_complex", "a Content-Type or Content-Disposition header is too long")


def _content_digest(headers: dict[str, str], raw: bytes) -> str:
    """What makes two mails the same mail: the same one relayed again, or through another door
    (SMTP, a mailbox, a webhook), has the same digest, so trace headers (Received, Return-Path,
    Delivered-To, Authentication-Results) that each hop adds are left out."""
    split = re.search(rb"\r?\n\r?\n", raw)
    digest = hashlib.sha256()
    for name in ("from", "to", "date", "subject"):
        digest.update(headers.get(name, "").encode() + b"\x1f")
    digest.update((raw[split.end() :] if split else b"").replace(b"\r\n", b"\n"))
    return digest.hexdigest()[:32]


# ------------------------------------------------------------------ body and attachments


def _leaves(root: Message) -> Iterator[Message]:
    stack = [root]  # iterative: a deeply nested mail must not exhaust the call stack
    while stack:
        part = stack.pop()
        # is_multipart() looks at the parsed parts; get_payload() would first decode a leaf with
        # its declared charset, which raises for codecs like idna
        if part.get_content_maintype() == "multipart" and part.is_multipart():
            stack.extend(reversed(cast(list[Message], part.get_payload())))  # a multipart's payload: its parts
        else:
            yield part


def _bytes(part: Message) -> bytes:
    try:
        if part.get_content_type() == "message/rfc822":  # a mail attached whole (forwarded)
            inner = part.get_payload()
            return inner[0].as_bytes() if isinstance(inner, list) and inner and isinstance(inner[0], Message) else b""
        data = part.get_payload(decode=True)
    except Exception:
        return b""
    return data if isinstance(data, bytes) else b""


def _text(part: Message) -> str:
    data = _bytes(part)
    charset = str(part.get_content_charset() or "utf-8").strip()
    charset = re.sub(r"^(iso-8859-\d+)-[ie]$", r"\1", charset)  # the bidi variants of Arabic/Hebrew
    try:
        return data.decode(charset, "replace")
    except (LookupError, ValueError):  # an unknown or non-text codec name
        return data.decode("utf-8", "replace")


def _filename(part: Message) -> str | None:
    # read from the raw headers: the parser turns a header with 8-bit bytes (a UTF-8 file name,
    # as many mailers send it) into a Header object whose text has lost them
    fields = [
        (name, value)
        for name, value in part.raw_items()
        if isinstance(value, str) and name.lower() in ("content-disposition", "content-type")
    ]
    if not any("name" in value.lower() for _, value in fields):  # most parts: no file name at all
        return None
    holder = Message()
    for name, value in fields:
        holder[name] = unescape(value)
    try:
        found = holder.get_filename()
    except Exception:
        return None
    if not found:
        return None
    name = unescape(str(found))[:1000]
    if "=?" in name:  # RFC 2047 encoded words, as many mailers send them, though not allowed here
        name = decode_words(name)
    return file_name(name)


def _read_parts(msg: Message, max_blob_bytes: int) -> tuple[str, str, list[Attachment], list[Blob]]:
    plain: list[str] = []
    html: list[str] = []
    attachments: list[Attachment] = []
    blobs: list[Blob] = []
    for part in _leaves(msg):
        media_type = part.get_content_type()
        disposition = part.get_content_disposition()
        filename = _filename(part)
        if media_type == "text/html" and disposition != "attachment" and not filename:
            html.append(_text(part))
            continue
        # a multipart without a usable boundary is read as its text, not kept as a file
        if (
            (media_type == "text/plain" or part.get_content_maintype() == "multipart")
            and not filename
            and disposition != "attachment"
        ):
            plain.append(_text(part))
            continue
        if len(attachments) >= MAX_ATTACHMENTS:
            continue
        blob = Blob(_bytes(part), media_type, filename)
        kept = len(blob.data) <= max_blob_bytes
        if kept:
            blobs.append(blob)
        attachments.append(
            Attachment(
                filename=filename,
                media_type=media_type_of(media_type),
                size=len(blob.data),
                sha256=blob.sha256,
                content_ref=blob.ref if kept else None,
                inline=disposition == "inline" or (disposition is None and part.get("content-id") is not None),
                content_id=(first_id(str(part.get("content-id"))) or None) if part.get("content-id") else None,
            )
        )
    return "\n".join(plain), "\n".join(html), attachments, blobs
