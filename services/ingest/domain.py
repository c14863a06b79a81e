"""Normalising channel messages: pure functions from a channel's payload to one
`MessageReceived`. The message id is derived from the channel's own id, so a webhook
delivered twice maps to the same id."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, EmailStr, Field, field_validator

from shared.events import Channel, CustomerRef, Identity, MessageReceived, stable_id

MAX_TEXT = 100_000


def message_id_for(channel: Channel, *external: str) -> str:
    return "msg_" + stable_id(channel.value, *external, size=24)


class ChatCustomer(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = None
    visitor_id: str = Field(min_length=1, max_length=200)


class ChatInbound(BaseModel):
    """`POST /v1/inbound/chat` (CONTRACT.md)."""

    session_id: str = Field(min_length=1, max_length=200)
    message_id: str = Field(min_length=1, max_length=200)
    customer: ChatCustomer
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    sent_at: datetime

    @field_validator("sent_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("sent_at needs a time zone (for example 2026-11-23T10:00:00Z)")
        return value


def normalise_chat(payload: ChatInbound, *, received_at: datetime) -> MessageReceived:
    identities = [Identity(kind="chat", value=payload.customer.visitor_id)]
    if payload.customer.email:
        identities.insert(0, Identity(kind="email", value=payload.customer.email.lower()))
    return MessageReceived(
        message_id=message_id_for(Channel.chat, payload.session_id, payload.message_id),
        channel=Channel.chat,
        external_id=payload.message_id,
        thread_key=f"chat:{payload.session_id}",
        customer=CustomerRef(name=payload.customer.name, identities=identities),
        text=payload.text,
        sent_at=payload.sent_at,
        received_at=received_at,
    )
