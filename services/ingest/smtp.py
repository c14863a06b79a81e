"""The SMTP door: a retailer's MX or forwarding rule delivers mail here, and hears 250 only once it is durable.

An MTA keeps a mail it got a 4xx for and tries again later, so the door answers 250 only after
Kafka acknowledged the mail (through the same `IngestService.accept` as the email webhook) and
451 when it could not: the sending MTA holds the mail, nothing is lost. A redelivery after a 451
whose record did reach Kafka after all is the same message id: a duplicate downstream, not a
second message. Every ingest process listens on the port (SO_REUSEPORT), like on its HTTP port."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.concurrency import run_in_threadpool

from services.ingest.channels.mail import normalise_email
from services.ingest.domain import Normalised, Rejected
from services.ingest.ratelimit import RateLimiter
from services.ingest.service import IngestService, NotDurable
from services.ingest.settings import IngestSettings
from services.ingest.verification import mail_sender_passed, trusted_ids, verified
from shared.events import utcnow
from shared.headers import one_line
from shared.http import listening

log = logging.getLogger(__name__)

INLINE_MAIL_BYTES = 16 * 1024  # as the webhook: small mails are read on the event loop (see api.py)


def _reply(code: str, text: str) -> str:
    """One SMTP reply line: a reason may not break it (RFC 5321 4.2)."""
    return f"{code} {one_line(text)[:400]}"


class MailDoor:
    """aiosmtpd's handler: recipients checked at RCPT, the mail accepted at the end of DATA."""

    def __init__(self, service: IngestService, settings: IngestSettings) -> None:
        self.service, self.settings = service, settings
        self.domains = frozenset(
            d.strip().lower().lstrip("@") for d in settings.support_domains.split(",") if d.strip()
        )
        self.trusted = trusted_ids(settings.trusted_authserv_ids)
        self.limiter = (
            RateLimiter(settings.rate_limit_per_min, settings.rate_limit_burst)
            if settings.rate_limit_per_min > 0
            else None
        )

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        domain = address.rsplit("@", 1)[-1].lower()
        if self.domains and domain not in self.domains:
            return _reply("550", f"5.7.1 {domain} is not a support domain here (SUPPORT_DOMAINS)")
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = bytes(envelope.original_content or b"")
        try:
            item = await self._read(raw, envelope.mail_from)
        except Rejected as exc:
            return _reply("554", f"5.6.0 {exc.message}")
        sender = item.message.customer.identities[0]
        if self.limiter and (wait := self.limiter.take({f"email:{sender.kind}:{sender.value}": 1})):
            return _reply("451", f"4.7.1 this sender sent too much; try again in {wait:.0f} s")
        try:
            message_id = await asyncio.wait_for(
                self.service.accept(item.message, item.blobs, item.claim), self.settings.smtp_ack_timeout_s
            )
        except Rejected as exc:
            return _reply("554", f"5.3.4 {exc.message}")
        except (NotDurable, TimeoutError) as exc:
            # the MTA keeps the mail and tries again: Kafka did not acknowledge it (yet)
            why = (
                str(exc)
                if isinstance(exc, NotDurable)
                else f"no acknowledgement within {self.settings.smtp_ack_timeout_s:g} s (INGEST_SMTP_ACK_TIMEOUT_S)"
            )
            log.warning("SMTP door: a mail was not acknowledged by Kafka, answered 451: %s", why)
            return "451 4.3.0 not stored yet, try again later"
        return _reply("250", f"2.0.0 OK {message_id}")

    async def _read(self, raw: bytes, envelope_from: str | None) -> Normalised:
        kwargs: dict[str, Any] = {
            "received_at": utcnow(),
            "max_blob_bytes": self.settings.max_blob_bytes,
            "envelope_from": envelope_from,
        }
        try:
            if len(raw) <= INLINE_MAIL_BYTES:
                item = normalise_email(raw, **kwargs)
            else:
                item = await run_in_threadpool(normalise_email, raw, **kwargs)
        except Rejected:
            raise
        except Exception as exc:  # a mail that breaks the parser is refused, never a crashed session
            log.exception("SMTP door: could not read a mail")
            raise Rejected("unreadable", f"the mail cannot be read: {type(exc).__name__}") from exc
        sender = item.message.customer.identities[0]
        if self.trusted and sender.kind == "email" and mail_sender_passed(raw, sender.value, self.trusted):
            item = Normalised(verified(item.message), item.blobs, item.claim)
        return item


class SmtpServer:
    """The listening side: started once the service runs, on INGEST_SMTP_HOST:INGEST_SMTP_PORT."""

    def __init__(self, service: IngestService, settings: IngestSettings) -> None:
        self.door, self.settings = MailDoor(service, settings), settings
        self.server: asyncio.Server | None = None

    @property
    def host(self) -> str:
        return self.settings.smtp_host or self.settings.http_host

    async def start(self) -> None:
        """Idempotent: the runtime's connect loop may call it again."""
        if self.server is not None or not self.settings.smtp_port:
            return
        try:
            sock = listening(self.host, self.settings.smtp_port, shared=True)
        except OSError as exc:  # the HTTP doors keep working; mail waits at the sending MTA meanwhile
            log.error(
                "SMTP door: cannot listen on %s:%d (%s); set INGEST_SMTP_PORT (0: no SMTP door)",
                self.host,
                self.settings.smtp_port,
                exc,
            )
            return
        self.server = await asyncio.get_running_loop().create_server(self._session, sock=sock)
        log.info("SMTP door listening on %s:%d", self.host, self.settings.smtp_port)

    def _session(self) -> SMTP:
        return SMTP(
            self.door,
            data_size_limit=self.settings.max_email_bytes,
            hostname="deskstream",
            ident="deskstream ingest",
            timeout=60,
        )

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            server.close()
            try:  # sessions still open are cut by the process ending; their MTAs retry
                await asyncio.wait_for(server.wait_closed(), 5)
            except TimeoutError:
                pass
