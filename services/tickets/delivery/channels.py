"""The ways out: one small adapter per channel behind one interface. Each sends one
outbound message and says what happened — sent (with the provider's id), try later
(a transient failure), or undeliverable (a permanent one)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiosmtplib
import httpx

from services.tickets.domain import Direction, Message, Ticket
from shared.headers import has_breaks, one_line


@dataclass(frozen=True)
class Outgoing:
    ticket: Ticket
    message: Message
    to: str
    idempotency_key: str  # the outbound message id: the same on every attempt


@dataclass(frozen=True)
class Sent:
    provider_id: str | None
    detail: str


class TryLater(Exception):
    """A transient failure (provider down, rate limited, network): worth another attempt."""


class Undeliverable(Exception):
    """A permanent failure (address refused, outside the channel's rules): retrying cannot help."""


class ChannelAdapter(Protocol):
    async def send(self, out: Outgoing) -> Sent: ...


BlobReader = Callable[[str], Awaitable[bytes | None]]


# ---------------------------------------------------------------- email
def compose_email(
    ticket: Ticket, message: Message, to: str, *, support_email: str, attachments: Sequence[tuple[str, str, bytes]] = ()
) -> EmailMessage:
    """The reply as a mail threaded to the customer's last message, with the ticket
    reference in the subject so any answer finds its way back; text and HTML parts."""
    inbound = [m for m in ticket.messages if m.direction == Direction.inbound and _threadable(m.external_id)]
    thread = [
        m.external_id for m in ticket.messages if _threadable(m.external_id) and m.message_id != message.message_id
    ]
    # one line each: text a customer sent (or an older ingest kept) may hold line breaks
    subject = one_line(ticket.subject or "").strip() or "Your request"
    if not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    mail = EmailMessage()
    mail["From"] = formataddr(("Customer Support", support_email))
    mail["To"] = formataddr((one_line(ticket.customer.name or ""), to))
    mail["Subject"] = f"{subject} [#{ticket.id}]"
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = f"<{message.message_id}@{support_email.rsplit('@', 1)[-1]}>"
    if inbound:
        mail["In-Reply-To"] = f"<{inbound[-1].external_id}>"
    if thread:
        mail["References"] = " ".join(f"<{ref}>" for ref in thread[-20:])
    mail["X-Deskstream-Ticket"] = ticket.id
    mail.set_content(message.text)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    for filename, media_type, data in attachments:
        maintype, _, subtype = media_type.partition("/")
        mail.add_attachment(
            data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=one_line(filename) or "attachment",
        )
    return mail


def _threadable(external_id: str | None) -> bool:
    """Whether a message's channel id can stand in In-Reply-To/References: a mail's Message-ID
    can; a chat or social id with spaces or line breaks in it cannot."""
    if not external_id:
        return False
    return " " not in external_id and not has_breaks(external_id)


class SmtpMail:
    """Mail through the relay in `SMTP_URL` (`smtp://host:port`, `smtps://` for TLS)."""

    def __init__(self, url: str, *, support_email: str, blobs: BlobReader, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"SMTP_URL must look like smtp://host:port, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or (465 if parts.scheme == "smtps" else 25)
        self.tls = parts.scheme == "smtps"
        self.username, self.password = parts.username, parts.password
        self.support_email = support_email
        self.blobs = blobs
        self.timeout_s = timeout_s

    def planned_id(self, out: Outgoing) -> str:
        """Our Message-ID, known before sending, so an instant answer still finds the ticket."""
        return f"{out.message.message_id}@{self.support_email.rsplit('@', 1)[-1]}"

    async def send(self, out: Outgoing) -> Sent:
        files = []
        for a in out.message.attachments:
            data = await self.blobs(a.content_ref) if a.content_ref else None
            if data is None:
                raise Undeliverable(f"attachment {a.filename or a.content_ref} is no longer stored")
            files.append((a.filename or "attachment", a.media_type, data))
        try:
            mail = compose_email(out.ticket, out.message, out.to, support_email=self.support_email, attachments=files)
        except ValueError as exc:  # what the mail policy refuses now it refuses on every attempt
            raise Undeliverable(f"the reply cannot be written as a mail: {exc}"[:500]) from exc
        try:
            await aiosmtplib.send(
                mail,
                hostname=self.host,
                port=self.port,
                use_tls=self.tls,
                username=self.username,
                password=self.password,
                timeout=self.timeout_s,
                start_tls=False if not self.tls else None,
            )
        except aiosmtplib.SMTPResponseException as exc:
            detail = f"SMTP {exc.code}: {exc.message}"[:500]
            raise (Undeliverable if 500 <= exc.code < 600 else TryLater)(detail) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TryLater(f"{type(exc).__name__}: {exc}"[:500]) from exc
        return Sent(provider_id=mail["Message-ID"].strip("<>"), detail=f"relayed to {out.to}")


# ---------------------------------------------------------------- HTTP providers
def _transient_status(status: int) -> bool:
    # refused credentials are fixed by an operator, after which the message should still go
    return status in (401, 403, 408, 409, 425, 429) or status >= 500


async def _post(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return await client.post(url, **kwargs)
    except httpx.HTTPError as exc:
        raise TryLater(f"{type(exc).__name__}: {exc}"[:500]) from exc


def _error_of(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class TwilioSms:
    """SMS through Twilio's Messages API (`POST /2010-04-01/Accounts/{sid}/Messages.json`)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        account_sid: str,
        auth: tuple[str, str],
        sender: str,
        status_callback: str | None = None,
    ) -> None:
        self.client = client
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.auth = auth  # (API key sid, secret) or (account sid, auth token)
        self.sender = sender  # a phone number, or a Messaging Service sid (MG...)
        self.status_callback = status_callback

    async def send(self, out: Outgoing) -> Sent:
        form = {"To": out.to, "Body": out.message.text[:1600]}
        form["MessagingServiceSid" if self.sender.startswith("MG") else "From"] = self.sender
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        response = await _post(self.client, self.url, data=form, auth=self.auth)
        body = _error_of(response)
        if response.status_code in (200, 201):
            return Sent(provider_id=body.get("sid"), detail=f"Twilio {body.get('status', 'accepted')}")
        detail = f"Twilio {response.status_code} code {body.get('code')}: {body.get('message', response.text[:200])}"
        raise (TryLater if _transient_status(response.status_code) else Undeliverable)(detail[:500])


# WhatsApp Cloud API error codes that a later attempt can get past (rate limits, outages)
WHATSAPP_TRANSIENT_CODES = frozenset({1, 2, 4, 17, 341, 80007, 130429, 131000, 131016, 131048, 131056, 133004})


class WhatsAppCloud:
    """WhatsApp through the Cloud API (`POST /{phone_number_id}/messages`)."""

    def __init__(self, client: httpx.AsyncClient, *, base_url: str, phone_number_id: str, access_token: str) -> None:
        self.client = client
        self.url = f"{base_url.rstrip('/')}/{phone_number_id}/messages"
        self.headers = {"Authorization": f"Bearer {access_token}"}

    async def send(self, out: Outgoing) -> Sent:
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": out.to,
            "type": "text",
            "text": {"preview_url": False, "body": out.message.text[:4096]},
        }
        response = await _post(self.client, self.url, json=payload, headers=self.headers)
        body = _error_of(response)
        if response.status_code == 200 and body.get("messages"):
            return Sent(provider_id=body["messages"][0].get("id"), detail="WhatsApp accepted")
        error = body.get("error")
        if not isinstance(error, dict):
            error = {}
        code = error.get("code")
        detail = f"WhatsApp {response.status_code} code {code}: {error.get('message', response.text[:200])}"
        transient = _transient_status(response.status_code) or code in WHATSAPP_TRANSIENT_CODES
        raise (TryLater if transient else Undeliverable)(detail[:500])


class WebhookOut:
    """Social and voice replies: posted as JSON to the system that owns the channel
    (a social-media connector, a call-centre platform), signed when a secret is set."""

    def __init__(self, client: httpx.AsyncClient, *, url: str, secret: str | None = None) -> None:
        self.client = client
        self.url = url
        self.secret = secret

    async def send(self, out: Outgoing) -> Sent:
        body = json.dumps(
            {
                "ticket_id": out.ticket.id,
                "message_id": out.message.message_id,
                "channel": out.ticket.channel.value,
                "to": out.to,
                "text": out.message.text,
                "html": out.message.html,
                "author": out.message.author,
                "at": out.message.at.isoformat(),
            }
        ).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": out.idempotency_key}
        if self.secret:
            digest = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Deskstream-Signature"] = f"sha256={digest}"
        response = await _post(self.client, self.url, content=body, headers=headers)
        if 200 <= response.status_code < 300:
            return Sent(provider_id=_error_of(response).get("id"), detail=f"webhook {response.status_code}")
        detail = f"webhook {response.status_code}: {response.text[:200]}"
        raise (TryLater if _transient_status(response.status_code) else Undeliverable)(detail)


class ChatSession:
    """Chat replies wait in the customer's session: the stream pushes them to a connected
    widget, the poll endpoint hands them to one that is not (see delivery/chat.py)."""

    async def send(self, out: Outgoing) -> Sent:
        return Sent(provider_id=None, detail=f"in chat session {out.to}")
