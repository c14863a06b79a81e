"""Delivery reports: what a provider says became of a message deskstream sent — Twilio's
status callback (`POST /v1/inbound/sms/status`) and the `statuses` of a WhatsApp Cloud API
webhook. Each becomes a `deskstream.message.delivery_reported` record for the tickets
service, which finds the reply by the provider's id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.events import Channel, DeliveryReported

# the provider's word → ours; words not listed (queued, accepted, sending…) say nothing new
TWILIO_STATES = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}
WHATSAPP_STATES = {"sent": "sent", "delivered": "delivered", "read": "delivered", "failed": "failed"}


class WaStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=300)
    status: str = Field(max_length=50)
    timestamp: int | None = Field(None, ge=0, le=32_503_680_000)
    errors: list[dict[str, Any]] = Field(default_factory=list, max_length=20)


def twilio_report(form: dict[str, str], *, received_at: datetime) -> DeliveryReported | None:
    sid, status = form.get("MessageSid", "").strip(), form.get("MessageStatus", "").strip().lower()
    if not sid or status not in TWILIO_STATES:
        return None
    code, text = form.get("ErrorCode"), form.get("ErrorMessage")
    error = " ".join(p for p in (f"code {code}" if code else None, text) if p) or None
    return DeliveryReported(
        channel=Channel.sms,
        provider_id=sid[:300],
        state=TWILIO_STATES[status],
        provider_status=status[:50],
        error=error[:500] if error else None,
        at=received_at,
    )


def whatsapp_reports(statuses: list[WaStatus], *, received_at: datetime) -> list[DeliveryReported]:
    reports = []
    for s in statuses:
        state = WHATSAPP_STATES.get(s.status.lower())
        if state is None:
            continue
        first = s.errors[0] if s.errors else {}
        error = (
            " ".join(
                str(p)
                for p in (
                    f"code {first.get('code')}" if first.get("code") else None,
                    first.get("title") or first.get("message"),
                )
                if p
            )
            or None
        )
        at = datetime.fromtimestamp(s.timestamp, UTC) if s.timestamp else received_at
        reports.append(
            DeliveryReported(
                channel=Channel.whatsapp,
                provider_id=s.id,
                state=state,
                provider_status=s.status.lower()[:50],
                error=error[:500] if error else None,
                at=at,
            )
        )
    return reports
