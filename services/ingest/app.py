"""Ingest: normalises channel messages and hands them to Kafka (`ingest.messages`)."""
from __future__ import annotations

from fastapi import FastAPI

from services.ingest import api
from services.ingest.service import TOPIC, IngestService
from services.ingest.settings import IngestSettings
from services.ingest.store import BlobStore
from shared.events import MessageReceivedRecord
from shared.http import create_http_app
from shared.runtime import Runtime


def create_app(settings: IngestSettings | None = None, *, service: IngestService | None = None) -> FastAPI:
    """`service` replaces the Kafka- and MongoDB-backed one (tests drive the HTTP layer with a fake)."""
    settings = settings or IngestSettings()
    rt = Runtime("ingest", settings)
    publisher = rt.publisher(TOPIC, schema=MessageReceivedRecord,
                             description="deskstream.message.received: one normalised channel message")
    service = service or IngestService(publisher=publisher, source=rt.source, blobs=BlobStore(rt.mongo),
                                       is_connected=lambda: rt.broker_started)
    app = create_http_app(rt, title="deskstream ingest",
                          description="Inbound channel webhooks: every message becomes one normalised record.",
                          routers=[api.build_router(service, settings)])
    api.install_error_handlers(app)
    return app
