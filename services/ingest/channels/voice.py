"""Phone calls (`POST /v1/inbound/voice`): a finished call, with its transcript or recording when there is one."""

from __future__ import annotations

import mimetypes
from datetime import datetime
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, BaseModel, Field

from services.ingest.domain import MAX_TEXT, AwareDatetime, e164, e164_or_raw, message_id_for
from services.ingest.language import detect_language
from shared.events import Attachment, Channel, CustomerRef, Identity, MessageReceived


class VoiceInbound(BaseModel):
    """`POST /v1/inbound/voice` (CONTRACT.md)."""

    model_config = {"populate_by_name": True}

    call_id: str = Field(min_length=1, max_length=200)
    caller: str = Field(alias="from", min_length=1, max_length=40)
    to: str | None = Field(None, max_length=40)
    started_at: AwareDatetime
    duration_s: float = Field(ge=0, le=86_400 * 7)
    transcript: str | None = Field(None, max_length=MAX_TEXT)
    recording_url: AnyHttpUrl | None = None


def normalise_voice(payload: VoiceInbound, *, received_at: datetime) -> MessageReceived:
    phone = e164(payload.caller, field_name="from")
    seconds = f"{payload.duration_s:g}"
    text = (payload.transcript or "").strip() or f"Phone call, {seconds} s (no transcript)"
    recording = []
    if payload.recording_url:
        url = str(payload.recording_url)
        guessed = mimetypes.guess_type(urlsplit(url).path)[0] or ""
        recording = [
            Attachment(
                filename=urlsplit(url).path.rsplit("/", 1)[-1] or None,
                content_ref=url,
                media_type=guessed if guessed.startswith("audio/") else "audio/*",
            )
        ]
    return MessageReceived(
        message_id=message_id_for(Channel.voice, payload.call_id),
        channel=Channel.voice,
        external_id=payload.call_id,
        thread_key=f"voice:{phone}",
        customer=CustomerRef(identities=[Identity(kind="phone", value=phone)]),
        text=text,
        attachments=recording,
        language=detect_language(payload.transcript or ""),
        recipient=e164_or_raw(payload.to),
        sent_at=payload.started_at,
        received_at=received_at,
    )
