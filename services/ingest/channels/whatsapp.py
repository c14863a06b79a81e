"""WhatsApp (`POST /v1/inbound/whatsapp`): a Cloud API webhook, which may carry several messages or only statuses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.ingest.channels.receipts import WaStatus, whatsapp_reports
from services.ingest.domain import (
    Rejected,
    cap_name,
    cap_text,
    e164,
    e164_or_raw,
    file_name,
    media_type_of,
    message_id_for,
)
from services.ingest.language import detect_language
from shared.events import Attachment, Channel, CustomerRef, DeliveryReported, Identity, MessageReceived

_MEDIA = ("image", "video", "audio", "document", "sticker")


class WaMessage(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)  # each type brings its own object

    sender: str = Field(alias="from", min_length=1, max_length=32)
    id: str = Field(min_length=1, max_length=256)
    timestamp: int = Field(ge=0, le=32_503_680_000)  # unix seconds, sent as a string
    type: str = Field("text", max_length=40)


class WaContact(BaseModel):
    wa_id: str | None = None
    profile: dict[str, Any] = Field(default_factory=dict)


class WaValue(BaseModel):
    metadata: dict[str, Any] = Field(default_factory=dict)
    contacts: list[WaContact] = Field(default_factory=list)
    messages: list[WaMessage] = Field(default_factory=list, max_length=100)
    statuses: list[WaStatus] = Field(default_factory=list, max_length=1000)


class WaChange(BaseModel):
    value: WaValue


class WaEntry(BaseModel):
    changes: list[WaChange] = Field(default_factory=list)


class WhatsAppWebhook(BaseModel):
    """`POST /v1/inbound/whatsapp`: the Cloud API's `entry[].changes[].value.messages[]`."""

    object: str
    entry: list[WaEntry] = Field(default_factory=list)


def _s(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _content(msg: WaMessage) -> tuple[str, list[Attachment]]:
    """What agents read for each message type, and the media it references."""
    body = (msg.model_extra or {}).get(msg.type)
    body = body if isinstance(body, dict) else {}
    if msg.type == "text":
        return _s(body.get("body")) or "", []
    if msg.type in _MEDIA:
        media = [
            Attachment(
                filename=file_name(_s(body.get("filename"))),
                content_ref=f"whatsapp-media:{_s(body.get('id'))}",
                media_type=media_type_of(_s(body.get("mime_type"))),
            )
        ]
        return _s(body.get("caption")) or f"[{msg.type}]", media if body.get("id") else []
    if msg.type == "location":
        place = "; ".join(text for k in ("name", "address") if (text := _s(body.get(k))))
        return f"[location: {body.get('latitude')}, {body.get('longitude')}{'; ' + place if place else ''}]", []
    if msg.type == "interactive":  # a tapped reply button or list row: its title is the answer
        choice = body.get(_s(body.get("type")) or "")
        return (_s(choice.get("title")) if isinstance(choice, dict) else None) or "[interactive reply]", []
    if msg.type == "button":  # a quick-reply button of a template
        return _s(body.get("text")) or _s(body.get("payload")) or "[button]", []
    if msg.type == "reaction":
        return f"[reaction {_s(body.get('emoji')) or ''}]".replace(" ]", "]"), []
    return f"[{msg.type}]", []


def normalise_whatsapp(payload: WhatsAppWebhook, *, received_at: datetime) -> list[MessageReceived]:
    if payload.object != "whatsapp_business_account":
        raise Rejected("invalid_request", f"object: expected 'whatsapp_business_account', got {payload.object!r}")
    found: dict[str, MessageReceived] = {}  # one webhook may repeat a message: publish it once
    for change in (c for e in payload.entry for c in e.changes):
        names = {c.wa_id: c.profile.get("name") for c in change.value.contacts}
        business = change.value.metadata.get("display_phone_number")
        for msg in change.value.messages:
            phone = e164("+" + msg.sender.lstrip("+"), field_name="messages[].from")
            wa_id = phone.removeprefix("+")
            text, media = _content(msg)
            context = (msg.model_extra or {}).get("context")
            found.setdefault(
                msg.id,
                MessageReceived(
                    message_id=message_id_for(Channel.whatsapp, msg.id),
                    channel=Channel.whatsapp,
                    external_id=msg.id,
                    thread_key=f"whatsapp:{wa_id}",
                    # the same phone on SMS and WhatsApp is one customer
                    customer=CustomerRef(
                        name=cap_name(_s(names.get(msg.sender))),
                        identities=[Identity(kind="whatsapp", value=wa_id), Identity(kind="phone", value=phone)],
                    ),
                    text=cap_text(text.strip() or f"[{msg.type}]"),
                    attachments=media,
                    language=detect_language(text),
                    in_reply_to=_s(context.get("id")) if isinstance(context, dict) else None,
                    recipient=e164_or_raw("+" + str(business).lstrip("+")) if business else None,
                    sent_at=datetime.fromtimestamp(msg.timestamp, UTC),
                    received_at=received_at,
                ),
            )
    return list(found.values())


def reports_of(payload: WhatsAppWebhook, *, received_at: datetime) -> list[DeliveryReported]:
    """The delivery statuses a webhook carries, for messages we sent."""
    return whatsapp_reports(
        [s for e in payload.entry for c in e.changes for s in c.value.statuses], received_at=received_at
    )
