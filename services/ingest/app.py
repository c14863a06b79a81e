"""Ingest: normalises channel messages and hands them to Kafka (`ingest.messages`)."""

from __future__ import annotations

from services.ingest import api
from services.ingest.chat_sessions import ChatSessions, MemoryClaims, StoredClaims
from services.ingest.erasure import follow_erasures
from services.ingest.front import DirectRoutes
from services.ingest.mailboxes import api as mailbox_api
from services.ingest.mailboxes.config import mailbox_vault
from services.ingest.mailboxes.poller import MailboxPoller, owner_name
from services.ingest.mailboxes.store import MailboxStore
from services.ingest.ratelimit import address_limit
from services.ingest.records import KafkaRecords
from services.ingest.service import TOPIC, IngestService
from services.ingest.settings import IngestSettings
from services.ingest.signatures import UnsignedDoorsWarning
from services.ingest.smtp import SmtpServer
from services.ingest.store import BlobBatcher, BlobStore
from shared.credentials import ChatTokens, chat_key
from shared.events import MessageReceivedRecord
from shared.http import create_http_app, require_token
from shared.runtime import Runtime


def create_app(settings: IngestSettings | None = None, *, service: IngestService | None = None) -> DirectRoutes:
    """The ASGI app to serve: the inbound webhooks in front of the FastAPI app (`.fastapi`).
    `service` replaces the Kafka- and MongoDB-backed one (tests drive the HTTP layer with a fake)."""
    settings = settings or IngestSettings()
    rt = Runtime("ingest", settings)
    # declared for the AsyncAPI document; the records themselves go through `records` below
    rt.publisher(
        TOPIC, schema=MessageReceivedRecord, description="deskstream.message.received: one normalised channel message"
    )
    rt.on_start.append(UnsignedDoorsWarning(settings))
    service_given = service is not None
    claims: StoredClaims | MemoryClaims = MemoryClaims()
    if service is None:
        records = KafkaRecords(
            settings.kafka_bootstrap_servers,
            TOPIC,
            client_id="deskstream-ingest-records",
            linger_ms=settings.kafka_linger_ms,
            stall_s=settings.kafka_stall_s,
            registry=rt.telemetry.registry,
        )
        blobs = BlobStore(rt.mongo)
        follow_erasures(rt, blobs)
        batcher = (
            BlobBatcher(blobs, linger_s=settings.blob_group_commit_ms / 1000) if settings.blob_group_commit else None
        )
        rt.on_start.append(records.start)
        rt.on_stop.append(records.stop)
        claims = StoredClaims(batcher or blobs)
        service = IngestService(
            publisher=records,
            source=rt.source,
            blobs=batcher or blobs,
            is_connected=lambda: rt.broker_started and records.started,
        )
        smtp = SmtpServer(service, settings)  # a door of its own, beside the HTTP one
        rt.on_start.append(smtp.start)
        rt.on_stop.append(smtp.stop)
    mailboxes, vault = MailboxStore(rt.mongo), mailbox_vault(settings)
    if not service_given:
        poller = MailboxPoller(
            store=mailboxes,
            service=service,
            vault=vault,
            owner=owner_name(settings.instance),
            max_blob_bytes=settings.max_blob_bytes,
        )
        rt.loops.append(poller.run)
    router = api.build_router(service, settings, ChatSessions(ChatTokens(chat_key(settings)), claims))
    app = create_http_app(
        rt,
        title="deskstream ingest",
        description="Inbound channel webhooks: every message becomes one normalised record.",
        routers=[router, mailbox_api.build_router(mailboxes, vault, require_token(rt))],
    )
    api.install_error_handlers(app)
    return DirectRoutes(app, router.routes, gate=address_limit(settings))
