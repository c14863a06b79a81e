"""Web forms (`POST /v1/inbound/webform`): one submission, its own conversation, as JSON or a form."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from services.ingest.domain import MAX_TEXT, Blob, EmailAddress, Normalised, e164, message_id_for
from services.ingest.language import detect_language
from shared.events import Attachment, Channel, CustomerRef, Identity, MessageReceived, stable_id


class WebformInbound(BaseModel):
    """`POST /v1/inbound/webform` (CONTRACT.md): `name`, `email`, `subject`, `message`; an
    optional `phone` (with its country code) links the customer's SMS and WhatsApp too."""

    name: str | None = Field(None, max_length=200)
    email: EmailAddress
    phone: str | None = Field(None, max_length=40)
    subject: str | None = Field(None, max_length=1000)
    message: str = Field(min_length=1, max_length=MAX_TEXT)


def normalise_webform(
    payload: WebformInbound, *, received_at: datetime, files: Sequence[Blob] = (), max_blob_bytes: int = 0
) -> Normalised:
    """Uploaded files (multipart forms) become attachments; those over `max_blob_bytes` are
    listed with their size and hash but not kept."""
    email = payload.email.lower()
    kept = [f for f in files if len(f.data) <= max_blob_bytes]
    # a form has no id of its own: the same submission sent twice is the same message
    digest = stable_id(email, payload.subject or "", payload.message, size=24)
    message_id = message_id_for(Channel.webform, digest)
    attachments = [
        Attachment(
            filename=f.filename,
            media_type=f.media_type,
            size=len(f.data),
            sha256=f.sha256,
            content_ref=f.ref if len(f.data) <= max_blob_bytes else None,
        )
        for f in files
    ]
    return Normalised(
        MessageReceived(
            message_id=message_id,
            channel=Channel.webform,
            external_id=digest,
            thread_key=f"webform:{message_id}",
            customer=CustomerRef(
                name=(payload.name or "").strip() or None,
                identities=[
                    Identity(kind="email", value=email),
                    *([Identity(kind="phone", value=e164(payload.phone, field_name="phone"))] if payload.phone else []),
                ],
            ),
            subject=(payload.subject or "").strip() or None,
            text=payload.message,
            attachments=attachments,
            language=detect_language(payload.message),
            sent_at=received_at,
            received_at=received_at,
        ),
        tuple(kept),
    )
