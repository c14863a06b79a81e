"""Which identities a provider proved (shared/events.Identity.verified).

- SMS and WhatsApp: the webhook's signature was checked (TWILIO_AUTH_TOKEN, META_APP_SECRET set).
- Email: the sender's domain passed DMARC, DKIM (header.d) or SPF (smtp.mailfrom) according to an
  `Authentication-Results` header (RFC 8601, parsed by `authres`) written by a relay the retailer
  trusts (INGEST_TRUSTED_AUTHSERV_IDS). Headers from other authserv-ids are ignored: anyone can
  write one into their own mail; the trusted relay removes forged copies of its own.
- Everything else (chat, web forms, social and voice webhooks) is a claim."""

from __future__ import annotations

from email.parser import BytesHeaderParser

import authres

from shared.events import MessageReceived

FEATURES = authres.all_features()  # DKIM, SPF, DMARC and the other registered methods


def verified(message: MessageReceived) -> MessageReceived:
    """The message with every identity marked as proven (its webhook's signature was checked)."""
    ids = [i.model_copy(update={"verified": True}) for i in message.customer.identities]
    return message.model_copy(update={"customer": message.customer.model_copy(update={"identities": ids})})


def _aligned(domain: str | None, sender_domain: str) -> bool:
    """Relaxed alignment (as DMARC's): the authenticated domain is the sender's, a parent or a child of it."""
    if not domain:
        return False
    domain = domain.lower().strip().rsplit("@", 1)[-1]
    return sender_domain == domain or sender_domain.endswith("." + domain) or domain.endswith("." + sender_domain)


def mail_sender_passed(raw: bytes, sender: str, trusted: frozenset[str]) -> bool:
    """Did a trusted relay authenticate `sender`'s domain for this mail?"""
    if not trusted or "@" not in sender:
        return False
    sender_domain = sender.rsplit("@", 1)[1].lower()
    headers = BytesHeaderParser().parsebytes(raw, headersonly=True)
    for value in headers.get_all("Authentication-Results") or ():
        unfolded = " ".join(str(value).split())
        try:
            parsed = FEATURES.parse_value(unfolded)
        except Exception:  # a header that does not parse proves nothing
            continue
        if str(parsed.authserv_id).lower() not in trusted:
            continue
        for result in parsed.results:
            if str(result.result).lower() != "pass":
                continue
            method = str(result.method).lower()
            if method == "dmarc" and _aligned(getattr(result, "header_from", None), sender_domain):
                return True
            if method == "dkim" and _aligned(getattr(result, "header_d", None), sender_domain):
                return True
            if method == "spf" and _aligned(getattr(result, "smtp_mailfrom", None), sender_domain):
                return True
    return False


def trusted_ids(setting: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in setting.split(",") if part.strip())
