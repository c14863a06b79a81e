"""Web chat (`POST /v1/inbound/chat`): one message of a chat session."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from services.ingest.domain import MAX_TEXT, AwareDatetime, EmailAddress, message_id_for
from services.ingest.language import detect_language
from shared.events import Channel, CustomerRef, Identity, MessageReceived


class ChatCustomer(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    email: EmailAddress | None = None
    visitor_id: str = Field(min_length=1, max_length=200)


class ChatInbound(BaseModel):
    """`POST /v1/inbound/chat` (CONTRACT.md)."""

    session_id: str = Field(min_length=1, max_length=200)
    message_id: str = Field(min_length=1, max_length=200)
    customer: ChatCustomer
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    sent_at: AwareDatetime
    chat_token: str | None = Field(
        None,
        max_length=1000,
        description="the token the session's first message was "
        "answered with; required on every later message of the session",
    )


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
        language=detect_language(payload.text),
        sent_at=payload.sent_at,
        received_at=received_at,
    )
