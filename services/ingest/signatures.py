"""Webhook signatures as the providers compute them: Twilio `X-Twilio-Signature`, Meta `X-Hub-Signature-256`."""
from __future__ import annotations

import base64
import hashlib
import hmac


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
