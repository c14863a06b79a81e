"""What the channel normalisers (`services/ingest/channels/`) share: ids, rejections, kept bytes, phones,
record size."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import phonenumbers
from pydantic import AfterValidator, WithJsonSchema
from pydantic.networks import validate_email
from pydantic_core import PydanticSerializationError

from shared.events import Channel, MessageReceived, stable_id
from shared.headers import has_breaks, one_line

MAX_TEXT = 100_000  # characters of `text`; the channel's original keeps the rest
MAX_NAME = 200  # characters of a display name
MAX_FILENAME = 255  # characters of an attachment's file name, as most file systems allow
MAX_ID = 998  # characters of a channel's own id or reference (a mail header line's limit)
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+*-]{0,126}/[a-z0-9*][a-z0-9!#$&^_.+*-]{0,126}")
# Kafka takes ~1 MB a record; json.dumps escapes non-ASCII (\uXXXX), so measure it that way
MAX_RECORD_BYTES = 800_000
MAX_ESCAPE = 6  # json.dumps writes no UTF-8 byte as more than six bytes (a control character as \u00XX)
_SURROGATE = re.compile("[\ud800-\udfff]")  # in a str, any surrogate is a lone one


class Rejected(ValueError):
    """The payload cannot become a message; answered as 422 with `code` and the reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Blob:
    """Bytes ingest keeps (an attachment, a raw mail), addressed by their sha256."""

    data: bytes
    media_type: str
    filename: str | None = None
    # stored under this id instead of its sha256: a claim on a name (see `Normalised.claim`)
    key: str | None = None
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    @property
    def ref(self) -> str:
        return f"blob:{self.sha256}"

    @property
    def id(self) -> str:
        return self.key or self.sha256


@dataclass(frozen=True)
class Normalised:
    """A normalised message and the bytes that must be stored before it is published."""

    message: MessageReceived
    blobs: tuple[Blob, ...] = ()
    # the message's claim on the channel's id for it, holding a digest of its content: stored with
    # the blobs (one insert), it tells a redelivery (same digest: the same message id) from another
    # message reusing the id (broken mailers reuse Message-IDs: it gets an id of its own)
    claim: Blob | None = None


def claim_for(channel: Channel, external_id: str, digest: str) -> Blob:
    key = "claim-" + stable_id(channel.value, external_id, size=32)
    return Blob(digest.encode(), "application/x-deskstream-claim", key=key)


def reused_id_variant(message: MessageReceived, claim: Blob) -> str:
    """The message id of a message whose channel id another, different message claimed first."""
    return message_id_for(message.channel, message.external_id, claim.data.decode())


def message_id_for(channel: Channel, *external: str) -> str:
    return "msg_" + stable_id(channel.value, *external, size=24)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a time zone (for example 2026-11-23T10:00:00Z)")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


@functools.lru_cache(maxsize=8192)
def _email(value: str) -> str:
    return validate_email(value)[1]


# pydantic's EmailStr, checking each distinct address once: email-validator takes ~50 µs an
# address, as much as the rest of a chat message's parsing, and a customer writes many messages.
# Same normalised value, same errors (a refused address is not remembered), same schema.
EmailAddress = Annotated[str, AfterValidator(_email), WithJsonSchema({"type": "string", "format": "email"})]


def e164(value: str | None, *, field_name: str) -> str:
    """A phone number in E.164. A number that phonenumbers cannot place keeps its digits
    after the `+`; without a `+` there is no country to assume, so it is rejected."""
    raw = (value or "").strip()
    digits = re.sub(r"\D", "", raw)
    if not raw.startswith("+") or not 6 <= len(digits) <= 15:
        raise Rejected("invalid_phone", f"{field_name}: {raw!r} is not a phone number with a country code (+...)")
    try:
        number = phonenumbers.parse(raw, None)
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        pass
    return "+" + digits


def e164_or_raw(value: str | None) -> str | None:
    """For our own numbers (`To`): normalised when possible, else kept as sent (a short code)."""
    try:
        return e164(value, field_name="to")
    except Rejected:
        return (value or "").strip() or None


def media_placeholder(media_types: list[str]) -> str:
    """What agents read for a message that is only media: `[image]`, `[image, audio]`."""
    kinds = [t.split("/", 1)[0] if t.split("/", 1)[0] in ("image", "audio", "video") else "file" for t in media_types]
    return "[" + ", ".join(kinds) + "]" if kinds else "[empty message]"


def cap_text(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + "\n[…cut: the original is kept]"


def cap_name(name: str | None) -> str | None:
    """A display name as shown to agents: trimmed and at most MAX_NAME characters."""
    return (name or "").strip()[:MAX_NAME].strip() or None


def file_name(name: str | None) -> str | None:
    # on one line: it may end up in a Content-Disposition header when the file is sent on
    return one_line((name or "").strip())[:MAX_FILENAME] or None


def headers_on_one_line(message: MessageReceived) -> MessageReceived:
    """The message with its customer's name and its subject on one line, whatever channel
    brought it: both end up in the headers of mail replies (To, Subject), where one line break
    would make every reply on the ticket impossible to send. Checked once here, at the door
    every message passes, rather than trusted to each normaliser."""
    name, subject = message.customer.name, message.subject
    if not (name and has_breaks(name)) and not (subject and has_breaks(subject)):
        return message  # nearly always: two regex searches, no copy
    customer = message.customer.model_copy(update={"name": one_line(name or "") or None})
    return message.model_copy(update={"customer": customer, "subject": one_line(subject or "") or None})


def media_type_of(value: str | None, default: str = "application/octet-stream") -> str:
    """`type/subtype` (RFC 6838: at most 127 characters each), lowercased; anything else is `default`."""
    bare = (value or "").split(";", 1)[0].strip().lower()
    return bare if _MEDIA_TYPE.fullmatch(bare) else default


def clean_strings(node: Any) -> Any:
    # lone surrogates (from JSON "\ud800" or undecodable header bytes) cannot be encoded
    # as UTF-8 downstream; replacing them here keeps one bad character from losing a message
    if isinstance(node, str):
        return _SURROGATE.sub("\ufffd", node)
    if isinstance(node, dict):
        return {clean_strings(k): clean_strings(v) for k, v in node.items()}
    if isinstance(node, list):
        return [clean_strings(v) for v in node]
    return node


def encoded_for_kafka(message: MessageReceived) -> tuple[MessageReceived, bytes]:
    """`fit_for_kafka(message)` and its JSON, serialising the message only once in the common case."""
    try:
        data = _MESSAGE_JSON.to_json(message)
        # bytes are never fewer than characters: this passes only what fit_for_kafka passes at once
        if len(data) * MAX_ESCAPE <= MAX_RECORD_BYTES:
            return message, data
    except PydanticSerializationError:  # a lone surrogate: fit_for_kafka cleans it
        pass
    message = fit_for_kafka(message)
    return message, _MESSAGE_JSON.to_json(message)


_MESSAGE_JSON = MessageReceived.__pydantic_serializer__


def fit_for_kafka(message: MessageReceived) -> MessageReceived:
    """The message as it can be published: valid UTF-8 and under the record size. Too big,
    it loses its HTML first (the original keeps it), then the end of its text, then the
    middle of its references (threading needs the first and the last), then the end of its
    attachment list (a note in the text says how many; a mail's original keeps them). What
    still does not fit is refused (`too_large`): retrying could not help."""
    try:  # the common case, cheaply: valid UTF-8 and surely small enough
        if len(message.model_dump_json()) * MAX_ESCAPE <= MAX_RECORD_BYTES:
            return message
    except PydanticSerializationError:  # a lone surrogate: cleaned below
        pass
    data = clean_strings(message.model_dump(mode="json"))
    size = len(json.dumps(data))
    if size > MAX_RECORD_BYTES and data.get("html"):
        size -= len(json.dumps(data["html"])) - 4
        data["html"] = None
    while size > MAX_RECORD_BYTES and len(data["text"]) > 100:
        # cut in proportion to the excess; escaped characters vary in size, so check again
        keep = int(len(data["text"]) * MAX_RECORD_BYTES / size * 0.95)
        data["text"] = cap_text(data["text"][:keep], keep - 40)
        size = len(json.dumps(data))
    if size > MAX_RECORD_BYTES and len(data["references"]) > 2:
        data["references"] = [data["references"][0], data["references"][-1]]
        size = len(json.dumps(data))
    unlisted = 0
    while size > MAX_RECORD_BYTES and data["attachments"]:
        size -= len(json.dumps(data["attachments"].pop())) + 2
        unlisted += 1
    if unlisted:
        data["text"] += f"\n[{unlisted} more attachments are not listed: the message was too large]"
        size = len(json.dumps(data))
    if size > MAX_RECORD_BYTES:
        raise Rejected(
            "too_large",
            "the message does not fit one record even without its HTML, most of its text and its attachment list",
        )
    return MessageReceived.model_validate(data)
