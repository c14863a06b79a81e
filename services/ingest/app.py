"""Ingest: normalises channel messages and hands them to Kafka (`ingest.messages`)."""
from __future__ import annotations

from fastapi import FastAPI

from services.ingest import api
from services.ingest.service import TOPIC, IngestService
from services.ingest.settings import IngestSettings
from shared.events import MessageReceivedRecord
from shared.http import create_http_app
from shared.runtime import Runtime


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    rt = Runtime("ingest", settings)
    publisher = rt.publisher(TOPIC, schema=MessageReceivedRecord,
                             description="deskstream.message.received: one normalised channel message")
    service = IngestService(publisher=publisher, source=rt.source, is_connected=lambda: rt.broker_started)
    return create_http_app(rt, title="deskstream ingest",
                           description="Inbound channel webhooks: every message becomes one normalised record.",
                           routers=[api.build_router(service)])
