"""Which resolutions are confirmed with the customer, the signed links they answer on, and the request
itself. Pure: no I/O, no framework.

A link names its ticket and its survey (one per resolution) and carries an HMAC over both, so the page
and its answer need nothing stored to tell a real link from a made-up one, and a link of an earlier
resolution is refused by the ticket (its survey is no longer the current one)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime

from pydantic import BaseModel, Field

from services.tickets.domain import Event, Ticket
from shared.events import Channel, stable_id

TOKEN_PATTERN = re.compile(r"^(TK-[A-Z0-9]{1,40})\.([a-f0-9]{8,64})\.([A-Za-z0-9_-]{43})$")
MAX_DELAY_S = 30 * 24 * 3600


class CsatSettings(BaseModel):
    """What an admin sets (`PUT /v1/settings/csat`): on which channels customers are asked, and how long
    after the resolution (0: at once)."""

    channels: dict[Channel, bool] = Field(
        default_factory=lambda: dict.fromkeys(Channel, True),
        description="channel → whether its customers are asked; a channel left out keeps its setting",
    )
    delay_s: float = Field(0.0, ge=0, le=MAX_DELAY_S, description="seconds between the resolution and the request")

    def applies(self, channel: Channel) -> bool:
        return self.channels.get(channel, True)

    def merged(self, change: CsatSettingsChange) -> CsatSettings:
        return CsatSettings(
            channels={**self.channels, **(change.channels or {})},
            delay_s=self.delay_s if change.delay_s is None else change.delay_s,
        )


class CsatSettingsChange(BaseModel):
    channels: dict[Channel, bool] | None = None
    delay_s: float | None = Field(None, ge=0, le=MAX_DELAY_S)


class Surveys:
    """Issues and reads the links customers answer on (`{public_url}/v1/csat/{token}`)."""

    def __init__(self, key: bytes, public_url: str) -> None:
        self.key = key
        self.public_url = public_url.rstrip("/")

    def _mac(self, ticket_id: str, survey_id: str) -> str:
        digest = hmac.new(self.key, f"csat\x00{ticket_id}\x00{survey_id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def token(self, ticket_id: str, survey_id: str) -> str:
        return f"{ticket_id}.{survey_id}.{self._mac(ticket_id, survey_id)}"

    def read(self, token: str) -> tuple[str, str] | None:
        """(ticket id, survey id) of a link this deployment issued; None for anything else."""
        found = TOKEN_PATTERN.match(token) if len(token) <= 200 else None
        if found is None:
            return None
        ticket_id, survey_id, mac = found.groups()
        return (ticket_id, survey_id) if hmac.compare_digest(mac, self._mac(ticket_id, survey_id)) else None

    def url(self, ticket_id: str, survey_id: str) -> str:
        return f"{self.public_url}/v1/csat/{self.token(ticket_id, survey_id)}"

    def ask(self, ticket: Ticket, now: datetime) -> list[Event]:
        """The request for the ticket's current resolution (the same one however often this is decided)."""
        resolved_at = ticket.resolved_at or now
        survey_id = stable_id("csat", ticket.id, resolved_at.isoformat(), size=16)
        url = self.url(ticket.id, survey_id)
        return ticket.request_csat(
            survey_id=survey_id,
            request_url=url,
            text=request_text(ticket.id, url),
            message_id="out_" + stable_id("csat-request", ticket.id, survey_id, size=24),
            now=now,
        )


def request_text(ticket_id: str, url: str) -> str:
    return (
        f"We have marked your request #{ticket_id} as resolved. Was it solved? "
        f"Please tell us and rate our help from 1 to 5: {url}"
    )
