"""Social media (`POST /v1/inbound/social`): a post or direct message relayed from a network."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from services.ingest.domain import MAX_TEXT, AwareDatetime, message_id_for
from services.ingest.language import detect_language
from shared.events import Channel, CustomerRef, Identity, MessageReceived

# a network named like another identity kind would let a handle claim someone's address or phone
RESERVED_KINDS = {"email", "phone", "chat", "whatsapp", "sms", "voice", "webform"}


class SocialAuthor(BaseModel):
    handle: str = Field(min_length=1, max_length=200)
    name: str | None = Field(None, max_length=200)

    @field_validator("handle")
    @classmethod
    def _bare(cls, value: str) -> str:
        bare = value.strip().lstrip("@").lower()
        if not bare:
            raise ValueError("needs at least one character besides @")
        return bare


class SocialInbound(BaseModel):
    """`POST /v1/inbound/social` (CONTRACT.md)."""

    network: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
    message_id: str = Field(min_length=1, max_length=200)
    author: SocialAuthor
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    in_reply_to: str | None = Field(None, max_length=200)
    sent_at: AwareDatetime

    @field_validator("network")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() in RESERVED_KINDS:
            raise ValueError(f"{value!r} is not a social network")
        return value.lower()


def normalise_social(payload: SocialInbound, *, received_at: datetime) -> MessageReceived:
    handle = payload.author.handle
    return MessageReceived(
        message_id=message_id_for(Channel.social, payload.network, payload.message_id),
        channel=Channel.social,
        external_id=payload.message_id,
        thread_key=f"social:{payload.network}:{handle}",
        customer=CustomerRef(
            name=payload.author.name or None, identities=[Identity(kind=payload.network, value=handle)]
        ),
        text=payload.text,
        language=detect_language(payload.text),
        in_reply_to=payload.in_reply_to,
        sent_at=payload.sent_at,
        received_at=received_at,
    )
