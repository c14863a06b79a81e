"""Tickets: owns ticket lifecycle state in MongoDB and publishes every change on `tickets.events`."""
from __future__ import annotations

import httpx
from fastapi import FastAPI

from services.tickets import api, handlers
from services.tickets.delivery.channels import ChannelAdapter, ChatSession, SmtpMail, TwilioSms, WebhookOut, WhatsAppCloud
from services.tickets.delivery.chat import ChatHub, build_chat_router
from services.tickets.delivery.rules import RetryPolicy
from services.tickets.delivery.service import DeliveryService
from services.tickets.delivery.store import DeliveryStore
from services.tickets.domain import ThreadingPolicy
from services.tickets.service import TicketService
from services.tickets.settings import TicketsSettings
from services.tickets.store import TicketStore
from shared import topics
from shared.events import TicketEventRecord
from shared.http import create_http_app, require_token
from shared.outbox import Outbox
from shared.runtime import Runtime


def channel_adapters(settings: TicketsSettings, deliveries: DeliveryStore,
                     client: httpx.AsyncClient) -> dict[str, ChannelAdapter]:
    """The ways out this deployment is configured for; a channel without one records `not_sent`."""
    adapters: dict[str, ChannelAdapter] = {"chat": ChatSession()}
    if settings.smtp_url:
        adapters["email"] = SmtpMail(settings.smtp_url, support_email=settings.support_email,
                                     blobs=deliveries.get_blob)
    if twilio_auth := _twilio_credentials(settings):
        adapters["sms"] = TwilioSms(client, base_url=settings.twilio_api_url, account_sid=settings.twilio_account_sid,
                                    auth=twilio_auth, sender=settings.twilio_from,
                                    status_callback=settings.twilio_status_callback)
    if settings.whatsapp_phone_number_id and settings.whatsapp_access_token:
        adapters["whatsapp"] = WhatsAppCloud(client, base_url=settings.whatsapp_api_url,
                                             phone_number_id=settings.whatsapp_phone_number_id,
                                             access_token=settings.whatsapp_access_token.get_secret_value())
    if settings.outbound_webhook_url:
        secret = settings.outbound_webhook_secret
        adapters["webhook"] = WebhookOut(client, url=settings.outbound_webhook_url,
                                         secret=secret.get_secret_value() if secret else None)
    return adapters


def _twilio_credentials(settings: TicketsSettings) -> tuple[str, str] | None:
    if not (settings.twilio_account_sid and settings.twilio_from):
        return None
    if settings.twilio_api_key_sid and settings.twilio_api_key_secret:
        return settings.twilio_api_key_sid, settings.twilio_api_key_secret.get_secret_value()
    if settings.twilio_auth_token:
        return settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value()
    return None


def create_app(settings: TicketsSettings | None = None) -> FastAPI:
    settings = settings or TicketsSettings()
    rt = Runtime("tickets", settings)
    rt.publisher(topics.TICKETS_EVENTS, schema=TicketEventRecord,
                 description="Every ticket change as a CloudEvent (deskstream.ticket.*), key = ticket id")
    store = TicketStore(rt.mongo)
    outbox = Outbox(store.tickets, rt.publish)
    threading = ThreadingPolicy(window_s=settings.thread_window_s, reopen_window_s=settings.reopen_window_s)
    service = TicketService(store=store, outbox=outbox, source=rt.source, threading=threading)

    deliveries = DeliveryStore(rt.mongo)
    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
    rt.on_stop.append(client.aclose)
    delivery = DeliveryService(
        store=deliveries, tickets=service, ticket_store=store,
        adapters=channel_adapters(settings, deliveries, client),
        retry=RetryPolicy(base_s=settings.delivery_retry_base_s, cap_s=settings.delivery_retry_max_s,
                          give_up_after_s=settings.delivery_give_up_s))
    hub = ChatHub()

    rt.broker.include_router(handlers.build_router(service, delivery, hub, consumers=settings.consumers))
    rt.on_start.append(store.ensure_indexes)
    rt.every(2.0, outbox.sweep_once, "event(s) left by an earlier crash re-sent")
    rt.every(1.0, service.wake_postponed, "postponed ticket(s) woken")
    rt.every(1.0, delivery.retry_due, "delivery attempt(s) retried")
    rt.every(30.0, lambda: service.close_quiet(after_s=settings.auto_close_s), "quiet resolved ticket(s) closed")
    return create_http_app(rt, title="deskstream tickets",
                           description="Ticket lifecycle, timeline, customers, the agent API, and the chat "
                                       "endpoints a customer's widget reads agents' replies from.",
                           routers=[api.build_router(service, store, deliveries, require_token(rt)),
                                    build_chat_router(hub, store, delivery)])
