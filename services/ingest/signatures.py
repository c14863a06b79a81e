"""Webhook signatures as the providers compute them: Twilio `X-Twilio-Signature`, Meta `X-Hub-Signature-256`;
and the start-up warning about the doors that do not check them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging

from services.ingest.settings import IngestSettings

log = logging.getLogger(__name__)


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """base64(HMAC-SHA1(token, url + every POST parameter's name and value, sorted by name))."""
    payload = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def twilio_valid(auth_token: str, url: str, params: list[tuple[str, str]], header: str | None) -> bool:
    if not header:
        return False
    return hmac.compare_digest(twilio_signature(auth_token, url, params).encode(), header.strip().encode())


def meta_valid(app_secret: str, body: bytes, header: str | None) -> bool:
    """`sha256=<hex HMAC-SHA256(app secret, raw body)>`."""
    scheme, _, received = (header or "").strip().partition("=")
    if scheme != "sha256" or not received:
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), received.lower().encode())


class UnsignedDoorsWarning:
    """Says once, as ingest starts (a `Runtime.on_start` hook: logging is set up by then), which
    channels accept posts from anyone because their provider's secret is unset. Such a door is
    how a stranger files messages as any phone number; the setting is easy to forget, so it
    is named in the log of every start rather than left to the docs."""

    def __init__(self, settings: IngestSettings) -> None:
        self.doors = settings.unsigned_doors()
        self.said = False

    async def __call__(self) -> None:
        if self.said:  # on_start hooks run again after a failed connection attempt
            return
        self.said = True
        for door in self.doors:
            log.warning(
                "%s webhooks (%s) accept unsigned posts from anyone: set %s to require %s's signature",
                door.channel,
                ", ".join(door.paths),
                door.env,
                door.provider,
            )
