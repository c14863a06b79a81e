"""Delivering agents' replies on the customer's channel. Driven by `deskstream.ticket.replied`
on `tickets.events` (its own consumer group), so the agent's API call never waits for a
mail server, delivery is retried, and a reply is sent once per outbound message id."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from urllib.parse import urlsplit

import aiosmtplib

from services.tickets.domain import Direction, Ticket
from services.tickets.service import NotFound, TicketService
from services.tickets.store import Purged, TicketStore
from shared.events import Channel, TicketReplied, utcnow
from shared.mongo import DuplicateKeyError, ReturnDocument

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5


class TransientDeliveryError(Exception):
    """Worth another try (the broker redelivers the event after a back-off)."""


class SmtpSender:
    """Sends one mail through the relay in `SMTP_URL` (`smtp://host:port`)."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"SMTP_URL must look like smtp://host:port, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or (465 if parts.scheme == "smtps" else 25)
        self.tls = parts.scheme == "smtps"
        self.username, self.password = parts.username, parts.password
        self.timeout_s = timeout_s

    async def send(self, mail: EmailMessage) -> None:
        await aiosmtplib.send(mail, hostname=self.host, port=self.port, use_tls=self.tls,
                              username=self.username, password=self.password, timeout=self.timeout_s,
                              start_tls=False if not self.tls else None)


def compose_email(ticket: Ticket, message_id: str, *, support_email: str, message_domain: str) -> EmailMessage | None:
    """The reply as a mail threaded to the customer's last message, with the ticket
    reference in the subject so any answer finds its way back."""
    reply = next(m for m in ticket.messages if m.message_id == message_id)
    to = next((i.split(":", 1)[1] for i in ticket.customer.identities if i.startswith("email:")), None)
    if to is None:
        return None
    inbound = [m for m in ticket.messages if m.direction == Direction.inbound and m.external_id]
    thread = [m.external_id for m in ticket.messages if m.external_id and m.message_id != message_id]
    subject = (ticket.subject or "Your request").strip()
    if not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    mail = EmailMessage()
    mail["From"] = formataddr(("Customer Support", support_email))
    mail["To"] = formataddr((ticket.customer.name or "", to))
    mail["Subject"] = f"{subject} [#{ticket.id}]"
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = f"<{message_id}@{message_domain}>"
    if inbound:
        mail["In-Reply-To"] = f"<{inbound[-1].external_id}>"
    if thread:
        mail["References"] = " ".join(f"<{ref}>" for ref in thread[-20:])
    mail["X-Deskstream-Ticket"] = ticket.id
    mail.set_content(reply.text)
    return mail


class DeliveryService:
    def __init__(self, *, store: TicketStore, tickets: TicketService, sender: SmtpSender | None,
                 support_email: str, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.tickets = tickets
        self.sender = sender
        self.support_email = support_email
        self.domain = support_email.rsplit("@", 1)[-1]
        self.deliveries = store.deliveries
        self.clock = clock

    async def deliver(self, replied: TicketReplied) -> None:
        if replied.ticket.channel != Channel.email:
            return  # other channels' adapters come with their own delivery paths
        message_id = replied.message.message_id
        done = await self.deliveries.find_one({"_id": message_id})
        if done and done.get("state") in ("sent", "failed", "not_sent"):
            return  # a redelivered event: this reply was already dealt with
        try:
            ticket = await self.store.load(replied.ticket.id)
        except Purged:
            return
        if ticket is None:
            return
        if self.sender is None:
            await self._record(ticket.id, message_id, "not_sent", "SMTP_URL is not set", None, 0)
            return
        mail = compose_email(ticket, message_id, support_email=self.support_email, message_domain=self.domain)
        if mail is None:
            await self._record(ticket.id, message_id, "not_sent", "the customer has no email address", None, 0)
            return
        provider_id = mail["Message-ID"].strip("<>")
        # the customer's answer will quote our Message-ID: it must lead back to this ticket
        await self.store.index_external(Channel.email.value, provider_id, ticket.id)
        attempts = await self._attempt(message_id)
        try:
            await self.sender.send(mail)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}"[:500]
            permanent = isinstance(exc, aiosmtplib.SMTPResponseException) and 500 <= exc.code < 600
            if permanent or attempts >= MAX_ATTEMPTS:
                await self._record(ticket.id, message_id, "failed", detail, provider_id, attempts)
                return
            log.warning("mail for %s failed (attempt %d): %s; will retry", message_id, attempts, detail)
            raise TransientDeliveryError(detail) from exc
        await self._record(ticket.id, message_id, "sent", f"to {mail['To']}", provider_id, attempts)

    async def _attempt(self, message_id: str) -> int:
        try:
            await self.deliveries.insert_one({"_id": message_id, "state": "sending", "attempts": 1})
            return 1
        except DuplicateKeyError:
            doc = await self.deliveries.find_one_and_update(
                {"_id": message_id}, {"$inc": {"attempts": 1}}, return_document=ReturnDocument.AFTER)
            return doc["attempts"]

    async def _record(self, ticket_id: str, message_id: str, state: str, detail: str | None,
                      provider_id: str | None, attempts: int) -> None:
        try:
            await self.tickets.record_delivery(ticket_id, message_id=message_id, state=state, detail=detail,
                                               provider_id=provider_id, attempts=attempts)
        except NotFound:
            pass
        await self.deliveries.update_one({"_id": message_id}, {"$set": {"state": state, "detail": detail}},
                                         upsert=True)
