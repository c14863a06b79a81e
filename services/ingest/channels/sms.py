"""SMS (`POST /v1/inbound/sms`): Twilio's Messaging webhook, form-encoded."""

from __future__ import annotations

from datetime import datetime

from services.ingest.domain import (
    Rejected,
    cap_name,
    cap_text,
    e164,
    e164_or_raw,
    media_placeholder,
    media_type_of,
    message_id_for,
)
from services.ingest.language import detect_language
from shared.events import Attachment, Channel, CustomerRef, Identity, MessageReceived

MAX_MEDIA = 10  # Twilio sends at most 10 media per message


def normalise_sms(form: dict[str, str], *, received_at: datetime) -> MessageReceived:
    sid = form.get("MessageSid", "").strip()
    if not sid:
        raise Rejected("invalid_request", "MessageSid: missing")
    sender = form.get("From", "")
    # Twilio delivers WhatsApp through the same webhook, with `whatsapp:` before the number
    via_whatsapp = sender.startswith("whatsapp:")
    phone = e164(sender.removeprefix("whatsapp:"), field_name="From")
    try:
        count = min(int(form.get("NumMedia") or 0), MAX_MEDIA)
    except ValueError:
        raise Rejected("invalid_request", f"NumMedia: {form.get('NumMedia')!r} is not a number") from None
    media = [
        Attachment(media_type=media_type_of(form.get(f"MediaContentType{i}")), content_ref=form[f"MediaUrl{i}"])
        for i in range(count)
        if form.get(f"MediaUrl{i}")
    ]
    body = form.get("Body", "").strip()
    identities = [Identity(kind="phone", value=phone)]
    if via_whatsapp:
        identities.insert(0, Identity(kind="whatsapp", value=phone.removeprefix("+")))
    return MessageReceived(
        message_id=message_id_for(Channel.sms, sid),
        channel=Channel.whatsapp if via_whatsapp else Channel.sms,
        external_id=sid,
        thread_key=f"whatsapp:{phone.removeprefix('+')}" if via_whatsapp else f"sms:{phone}",
        customer=CustomerRef(name=cap_name(form.get("ProfileName")), identities=identities),
        text=cap_text(body) or media_placeholder([m.media_type for m in media]),
        attachments=media,
        language=detect_language(body),
        recipient=e164_or_raw(form.get("To", "").removeprefix("whatsapp:")),
        sent_at=received_at,  # Twilio's webhook carries no send time
        received_at=received_at,
    )
