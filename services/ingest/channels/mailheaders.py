"""Reading a mail's headers robustly: decoded words, addresses, message ids and dates, each bounded in cost."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy, utils
from email.message import Message

from services.ingest.domain import MAX_ID
from shared.headers import one_line

# the structured header parser slows down with the square of a header's length; what it reads
# is cut to a size no real header reaches
MAX_PARSED_HEADER = 16_384
MAX_ADDRESS = 254  # characters of a mail address (RFC 5321's path, less its brackets)
# ids and addresses end up in the headers of our replies (In-Reply-To, References, To): no
# whitespace or control characters, which no mailer puts in them (see shared/headers.py)
_NOT_IN_ID = r"<>\s\x00-\x1f\x7f-\x9f\u2028\u2029"
_ID = re.compile(rf"<([^{_NOT_IN_ID}]+)>")
_BARE_ID = re.compile(rf"[^{_NOT_IN_ID}]+")
# the registry builds a new header class on every lookup; one is enough
# (typeshed calls header_factory a plain callable; it is a HeaderRegistry, which is indexable)
_UNSTRUCTURED = policy.default.header_factory["subject"]  # type: ignore[index]
_ADDRESS = re.compile(rf"[^@\"{_NOT_IN_ID}]+@[^@\"{_NOT_IN_ID}]+")


def unescape(text: str) -> str:
    # the parser keeps undecodable header bytes as surrogates; most raw 8-bit headers are UTF-8
    if text.isascii():
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def headers_of(msg: Message) -> dict[str, str]:
    """The first of each header (lowercased name), unfolded, as text."""
    found: dict[str, str] = {}
    for name, value in msg.raw_items():
        if isinstance(name, str) and isinstance(value, str) and name.lower() not in found:
            value = unescape(value)
            found[name.lower()] = (re.sub(r"\r?\n[ \t]*", " ", value) if "\n" in value else value).strip()
    return found


def decode_words(value: str) -> str:
    """The text of a header with its RFC 2047 encoded words (`=?windows-1256?B?...?=`) decoded,
    on one line: an encoded word may hold a line break (`=?utf-8?q?a=0Ab?=`), which would end up
    in the headers of our replies (a subject, a display name)."""
    if "=?" not in value and "\r" not in value and "\n" not in value:
        return one_line(unescape(value[:MAX_PARSED_HEADER]).strip())  # what the parser gives, ~50 times faster
    try:
        value = str(_UNSTRUCTURED("subject", value[:MAX_PARSED_HEADER]))
    except Exception:  # kept as it came
        pass
    return one_line(unescape(value).strip())


def addresses(value: str | None) -> list[tuple[str | None, str]]:
    """(display name, lowercased address) of each usable address in an address header."""
    # the older address parser: the structured one takes seconds on a few KB of stray quotes
    try:
        found = utils.getaddresses([(value or "")[:MAX_PARSED_HEADER]])
    except Exception:  # nested comments exhaust its recursion
        return []
    return [
        (decode_words(name) or None if name else None, unescape(address).strip().lower())
        for name, address in found
        if len(address.strip()) <= MAX_ADDRESS and _ADDRESS.fullmatch(address.strip())
    ]


def message_ids(value: str | None) -> list[str]:
    """The `<id>`s of Message-ID, In-Reply-To or References, without brackets, first seen first
    (one longer than a header line may be is no id a mailer wrote)."""
    return list(dict.fromkeys(i for i in _ID.findall(value or "") if len(i) <= MAX_ID))


def first_id(value: str | None) -> str | None:
    ids = message_ids(value)
    if ids:
        return ids[0]
    bare = (value or "").strip().strip("<>")  # some mailers leave the brackets out
    return bare if _BARE_ID.fullmatch(bare) and len(bare) <= MAX_ID else None


def date_of(value: str | None) -> datetime | None:
    try:
        parsed = utils.parsedate_to_datetime((value or "")[:200])
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# ------------------------------------------------------------------ lenient reading of broken header blocks

# a field name (RFC 5322: printable ASCII but the colon), maybe with the whitespace some mailers put
# before its colon (`Subject : …`), which the standard parser takes for the start of the body
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")
_STRICT_FIELD = re.compile(rb"[!-9;-~]+:")
_MBOX_LINE = re.compile(rb"From (?![ \t]*:)[^\r\n]*\r?\n")  # the line an mbox file puts before each mail
_LOOSE_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
SENDER_FIELDS = ("from", "sender", "reply-to", "return-path")  # where robust parsers look, in order


def repaired(raw: bytes) -> tuple[bytes, str | None]:
    """The mail as the standard parser can read it, and the address of an mbox `From ` line.

    The strict parser ends the header block at the first line that is not a field, so one stray
    line turns the rest of the headers (often From) into body text. Robust parsers read on: here a
    field written `Name : value` loses the space, and one unindented line between fields is taken
    as a continuation of the field above (a mailer that folded without indenting). Two such lines
    in a row are where the body starts. A mail that needs none of this comes back as it was."""
    envelope = None
    mbox = _MBOX_LINE.match(raw)
    if mbox:
        found = _LOOSE_ADDRESS.search(mbox.group().decode("latin-1"))
        envelope = found.group().lower() if found else None
        raw = raw[mbox.end() :]
    end = re.search(rb"\r?\n\r?\n", raw)
    block = raw[: end.start()] if end else raw
    lines = block.split(b"\n")
    if all(_STRICT_FIELD.match(line) or line[:1] in (b" ", b"\t") for line in lines):
        return raw, envelope  # nearly always: nothing to repair
    fixed: list[bytes] = []
    for i, line in enumerate(lines):
        field = _FIELD.match(line)
        if field:
            fixed.append(field.group(1) + b":" + line[field.end() :])
        elif line[:1] in (b" ", b"\t") and fixed:
            fixed.append(line)
        elif fixed and (i + 1 == len(lines) or _FIELD.match(lines[i + 1]) or lines[i + 1][:1] in (b" ", b"\t")):
            fixed.append(b" " + line)  # one unindented continuation line
        else:  # not a header block any more: the body starts here
            rest = b"\n".join(lines[i:]) + (raw[end.start() :] if end else b"")
            return b"\n".join(fixed) + b"\n\n" + rest, envelope
    return b"\n".join(fixed) + (raw[end.start() :] if end else b"\n\n"), envelope


def loose_address(value: str | None) -> tuple[str | None, str] | None:
    """The first thing that looks like an address in a header the address parser cannot read
    (`Big Bug bb@bug.com`, two bare addresses without a comma), and the words before it as name."""
    text = (value or "")[:MAX_PARSED_HEADER]
    found = _LOOSE_ADDRESS.search(text)
    if not found or len(found.group()) > MAX_ADDRESS:
        return None
    name = decode_words(text[: found.start()].strip(" \t<>\"'(),;")) or None
    return name, found.group().strip(".").lower()


def sender_of(headers: dict[str, str], *fallbacks: str | None) -> tuple[str | None, str] | None:
    """(display name, address) of whoever wrote the mail, found the way robust parsers find it: From,
    then Sender, Reply-To and Return-Path, each read strictly and then loosely; then `fallbacks`
    (an mbox line's or the SMTP envelope's sender). None: no address anywhere."""
    for name in SENDER_FIELDS:
        found = addresses(headers.get(name))
        if found:
            return found[0]
        loose = loose_address(headers.get(name))
        if loose:
            return loose
    for value in fallbacks:
        loose = loose_address(value)
        if loose:
            return None, loose[1]
    return None
