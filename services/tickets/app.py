"""Tickets: owns ticket lifecycle state in MongoDB and publishes every change on `tickets.events`."""
from __future__ import annotations

from fastapi import FastAPI

from services.tickets import api, handlers
from services.tickets.delivery import DeliveryService, SmtpSender
from services.tickets.domain import ThreadingPolicy
from services.tickets.service import TicketService
from services.tickets.settings import TicketsSettings
from services.tickets.store import TicketStore
from shared import topics
from shared.events import TicketEventRecord
from shared.http import create_http_app, require_token
from shared.outbox import Outbox
from shared.runtime import Runtime


def create_app(settings: TicketsSettings | None = None) -> FastAPI:
    settings = settings or TicketsSettings()
    rt = Runtime("tickets", settings)
    rt.publisher(topics.TICKETS_EVENTS, schema=TicketEventRecord,
                 description="Every ticket change as a CloudEvent (deskstream.ticket.*), key = ticket id")
    store = TicketStore(rt.mongo)
    outbox = Outbox(store.tickets, rt.publish)
    threading = ThreadingPolicy(window_s=settings.thread_window_s, reopen_window_s=settings.reopen_window_s)
    service = TicketService(store=store, outbox=outbox, source=rt.source, threading=threading)
    sender = SmtpSender(settings.smtp_url) if settings.smtp_url else None
    delivery = DeliveryService(store=store, tickets=service, sender=sender, support_email=settings.support_email)
    rt.broker.include_router(handlers.build_router(service, delivery))
    rt.on_start.append(store.ensure_indexes)
    rt.every(2.0, outbox.sweep_once, "event(s) left by an earlier crash re-sent")
    rt.every(1.0, service.wake_postponed, "postponed ticket(s) woken")
    return create_http_app(rt, title="deskstream tickets",
                           description="Ticket lifecycle, timeline, customers and the agent API.",
                           routers=[api.build_router(service, store, require_token(rt))])
