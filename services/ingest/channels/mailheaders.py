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
_UNSTRUCTURED = policy.default.header_factory["subject"]
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
    return [(decode_words(name) or None if name else None, unescape(address).strip().lower())
            for name, address in found if len(address.strip()) <= MAX_ADDRESS and _ADDRESS.fullmatch(address.strip())]


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
