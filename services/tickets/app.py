"""Tickets: owns ticket lifecycle state and publishes every change on `tickets.events`."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from fastapi import FastAPI
from prometheus_client import Gauge

from services.tickets import api
from services.tickets.commands import CommandBus
from services.tickets.credentials import build_credentials_router
from services.tickets.csat.api import build_csat_router
from services.tickets.csat.rules import Surveys
from services.tickets.csat.store import CsatStore
from services.tickets.customers import link_rows
from services.tickets.delivery.channels import (
    ChannelAdapter,
    ChatSession,
    SmtpMail,
    TwilioSms,
    WebhookOut,
    WhatsAppCloud,
)
from services.tickets.delivery.chat import ChatHub, build_chat_router, chat_item
from services.tickets.delivery.rules import RetryPolicy
from services.tickets.delivery.service import DeliveryService
from services.tickets.delivery.store import DeliveryStore
from services.tickets.domain import ThreadingPolicy
from services.tickets.erasure import Erasure, Shredder
from services.tickets.notices import with_notices
from services.tickets.privacy import build_privacy_router
from services.tickets.processor import DocPolicy, TicketsProcessor
from services.tickets.settings import TicketsSettings
from services.tickets.store import TicketStore
from services.tickets.webhooks.api import build_webhooks_router
from services.tickets.webhooks.rules import Breakers, RetryPolicy as WebhookRetry, wanted_types
from services.tickets.webhooks.service import ALWAYS_READ, Dispatcher, Subscriptions, WebhookProcessor
from services.tickets.webhooks.store import WebhookStore
from shared import topics
from shared.credentials import ChatTokens, Vault, chat_key, csat_key, sealing_secret
from shared.events import (
    EVENT_TYPES,
    Channel,
    CommandOutcomeRecord,
    CustomerChanged,
    CustomerErased,
    EventType,
    MessageReceivedRecord,
    PrivacyErasureRecord,
    RecordDelivery,
    SlaEventRecord,
    TicketCommandRecord,
    TicketCsatRequested,
    TicketEventRecord,
    TicketReplied,
    WebhookDisabled,
    WebhookDisabledRecord,
    stable_id,
    utcnow,
)
from shared.http import create_http_app, require_token
from shared.kafka import Outgoing, event
from shared.runtime import Runtime
from shared.stream import EachRecord


def channel_adapters(
    settings: TicketsSettings, deliveries: DeliveryStore, client: httpx.AsyncClient
) -> dict[str, ChannelAdapter]:
    """The ways out this deployment is configured for; a channel without one records `not_sent`."""
    adapters: dict[str, ChannelAdapter] = {"chat": ChatSession()}
    if settings.smtp_url:
        adapters["email"] = SmtpMail(settings.smtp_url, support_email=settings.support_email, blobs=deliveries.get_blob)
    if settings.twilio_account_sid and settings.twilio_from and (twilio_auth := _twilio_credentials(settings)):
        adapters["sms"] = TwilioSms(
            client,
            base_url=settings.twilio_api_url,
            account_sid=settings.twilio_account_sid,
            auth=twilio_auth,
            sender=settings.twilio_from,
            status_callback=settings.twilio_status_callback,
        )
    if settings.whatsapp_phone_number_id and settings.whatsapp_access_token:
        adapters["whatsapp"] = WhatsAppCloud(
            client,
            base_url=settings.whatsapp_api_url,
            phone_number_id=settings.whatsapp_phone_number_id,
            access_token=settings.whatsapp_access_token.get_secret_value(),
        )
    if settings.outbound_webhook_url:
        secret = settings.outbound_webhook_secret
        adapters["webhook"] = WebhookOut(
            client, url=settings.outbound_webhook_url, secret=secret.get_secret_value() if secret else None
        )
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
    rt.publisher(
        topics.TICKETS_EVENTS,
        schema=TicketEventRecord,
        description="Every ticket change as a CloudEvent (deskstream.ticket.*), key = ticket id; "
        "changes of who is who (deskstream.customer.changed), key = customer id",
    )
    rt.publisher(
        topics.TICKETS_NOTICES,
        schema=TicketEventRecord,
        description="Copies of the ticket events every tickets process must hear of while it runs (replies "
        "and surveys for its chat widgets, customers changed or erased), read from its end",
    )
    rt.publisher(
        topics.TICKETS_COMMANDS,
        schema=TicketCommandRecord,
        description="Agents' changes for the process owning the ticket, and messages for a ticket of "
        "another partition; key = ticket id",
    )
    rt.publisher(
        topics.TICKETS_OUTCOMES,
        schema=CommandOutcomeRecord,
        description="How each command with a request id ended, for the instance that asked",
    )
    rt.publisher(
        topics.PRIVACY_ERASURES,
        schema=PrivacyErasureRecord,
        description="Files no ticket refers to any more after a purge or a customer's erasure, for "
        "ingest to delete the copies it keeps",
    )
    store = TicketStore(rt.storage)
    threading = ThreadingPolicy(window_s=settings.thread_window_s, reopen_window_s=settings.reopen_window_s)
    processor = TicketsProcessor(
        store=store,
        producer=rt.producer,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        source=rt.source,
        threading=threading,
        docs=DocPolicy(
            new_delay=timedelta(seconds=settings.list_new_delay_s),
            changed_delay=timedelta(seconds=settings.list_changed_delay_s),
            keep_closed=timedelta(seconds=settings.keep_closed_s),
        ),
        hot=settings.hot_tickets,
        hold=settings.hold_tickets,
    )
    processor.auto_close_s = settings.auto_close_s
    registry = rt.telemetry.registry
    Gauge("deskstream_tickets_held", "Tickets this process holds in memory", registry=registry).set_function(
        lambda: len(processor.recency)
    )
    Gauge(
        "deskstream_tickets_read_back", "Tickets read back from their list documents since start", registry=registry
    ).set_function(lambda: processor.recalled)
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    surveys = Surveys(csat_key(settings), settings.public_url or f"http://{host}:{settings.http_port}")
    processor.surveys = surveys
    csat_store = CsatStore(rt.mongo)

    async def read_csat_settings() -> None:
        processor.csat_settings = await csat_store.settings()

    rereads: set[asyncio.Task] = set()

    def csat_settings_changed() -> None:  # an admin changed them (on any process): read them again
        task = asyncio.get_running_loop().create_task(read_csat_settings())
        rereads.add(task)
        task.add_done_callback(rereads.discard)

    rt.on_connected.append(read_csat_settings)
    rt.on_settings_changed("csat", csat_settings_changed)
    customers = processor.customers
    filing = rt.stream(
        name="file",
        group_id=topics.GROUP_TICKETS,
        processor=processor,
        types=processor.handlers,
        inputs={
            topics.INGEST_MESSAGES: MessageReceivedRecord,
            topics.TICKETS_COMMANDS: TicketCommandRecord,
            topics.SLA_EVENTS: SlaEventRecord,
        },
        description="File each customer message into exactly one ticket, apply commands (assignments, automation, "
        "agents' changes) and put SLA marks on the timeline, for the partitions this process owns",
    )
    bus = CommandBus(rt.producer, settings.kafka_bootstrap_servers, source=rt.source)

    async def record_delivery(command: RecordDelivery) -> None:
        await rt.send(
            [
                event(
                    topics.TICKETS_COMMANDS,
                    command.ticket_id,
                    EventType.RECORD_DELIVERY,
                    command,
                    source=rt.source,
                    subject=command.ticket_id,
                    id_=stable_id("command", command.command_id, size=24),
                    time=utcnow(),
                )
            ]
        )

    async def send(records: list[Outgoing]) -> None:
        """What this service sends outside its processor (which does the same in its commit): with a copy
        on `tickets.notices` of what every tickets process must hear of."""
        await rt.send(with_notices(records))

    async def publish_customer(change: CustomerChanged) -> None:
        for key, value in link_rows(change):
            await store.put_link(key, value)
        customers.apply(change)
        await send(
            [
                event(
                    topics.TICKETS_EVENTS,
                    change.customer_id,
                    EventType.CUSTOMER_CHANGED,
                    change,
                    source=rt.source,
                    subject=change.customer_id,
                    id_=stable_id("customer", change.model_dump_json(), size=24),
                    time=change.at,
                )
            ]
        )

    deliveries = DeliveryStore(rt.mongo)
    shredder = Shredder(store=store, deliveries=deliveries, send=rt.send, source=rt.source)
    processor.shredder = shredder
    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
    rt.on_stop.append(client.aclose)
    delivery = DeliveryService(
        store=deliveries,
        record=record_delivery,
        ticket_store=store,
        adapters=channel_adapters(settings, deliveries, client),
        retry=RetryPolicy(
            base_s=settings.delivery_retry_base_s,
            cap_s=settings.delivery_retry_max_s,
            give_up_after_s=settings.delivery_give_up_s,
        ),
    )

    async def deliver(data: dict) -> None:
        await delivery.on_replied(TicketReplied.model_validate(data))

    async def deliver_csat_request(data: dict) -> None:
        asked = TicketCsatRequested.model_validate(data)
        await delivery.on_outbound(asked.ticket.id, asked.message.message_id)

    rt.stream(
        name="deliver",
        group_id=topics.GROUP_TICKETS_DELIVERY,
        types={EventType.TICKET_REPLIED, EventType.TICKET_CSAT_REQUESTED},
        processor=EachRecord(
            {EventType.TICKET_REPLIED: deliver, EventType.TICKET_CSAT_REQUESTED: deliver_csat_request}
        ),
        inputs={topics.TICKETS_EVENTS: TicketEventRecord},
        batch_wait_ms=100,
        description="Deliver agents' replies and customer confirmation requests on the customer's channel",
    )

    webhooks = WebhookStore(rt.mongo)
    vault = Vault(sealing_secret(settings), "deskstream webhook secrets")
    rt.spec.publisher(
        topics.TICKETS_EVENTS,
        schema=WebhookDisabledRecord,
        title="tickets:tickets.events:webhook-disabled",
        description="A webhook subscription switched off after failing for 24 h, key = webhook id",
    )
    subscriptions = Subscriptions(webhooks)

    async def webhook_disabled(change: WebhookDisabled) -> None:
        await rt.send(
            [
                event(
                    topics.TICKETS_EVENTS,
                    change.webhook_id,
                    EventType.WEBHOOK_DISABLED,
                    change,
                    source=rt.source,
                    subject=change.webhook_id,
                    id_=stable_id("webhook-disabled", change.webhook_id, change.at.isoformat(), size=24),
                    time=change.at,
                )
            ]
        )

    dispatcher = Dispatcher(
        store=webhooks,
        subscriptions=subscriptions,
        client=client,
        allow_private=settings.webhooks_allow_private,
        retry=WebhookRetry(
            base_s=settings.webhooks_retry_base_s,
            cap_s=settings.webhooks_retry_max_s,
            give_up_after_s=settings.webhooks_give_up_s,
        ),
        per_webhook=settings.webhooks_per_subscriber,
        timeout_s=settings.webhooks_timeout_s,
        disabled=webhook_disabled,
        vault=vault,
        max_pending=settings.webhooks_max_pending,
        breakers=Breakers(
            threshold=settings.webhooks_breaker_failures,
            base_s=settings.webhooks_retry_base_s,
            cap_s=settings.webhooks_probe_max_s,
        ),
    )
    webhook_stream = rt.stream(
        name="webhooks",
        group_id=topics.GROUP_TICKETS_WEBHOOKS,
        processor=WebhookProcessor(store=webhooks, subscriptions=subscriptions, dispatcher=dispatcher),
        inputs={topics.TICKETS_EVENTS: TicketEventRecord, topics.SLA_EVENTS: SlaEventRecord},
        batch_wait_ms=100,
        description="Queue every event a webhook subscription wants, and POST it, signed, in order per ticket",
    )

    def narrow(subs: dict) -> None:  # types no subscription wants are skipped by their header, unparsed
        webhook_stream.types = (
            wanted_types((s.get("events") or ["*"] for s in subs.values() if s.get("active", True)), EVENT_TYPES)
            | ALWAYS_READ
        )

    subscriptions.on_read = narrow
    rt.on_settings_changed("webhooks", dispatcher.changed)
    rt.on_start.append(webhooks.ensure_indexes)
    rt.loops.append(dispatcher.run)
    rt.on_stop.insert(0, dispatcher.stop)
    rt.every(0.5, dispatcher.flush, "")
    rt.every(
        600.0,
        lambda: webhooks.prune(utcnow() - timedelta(seconds=settings.webhooks_keep_log_s)),
        "webhook attempt(s) aged out of the log",
    )

    hub = ChatHub()

    def push_chat_reply(data: dict) -> None:
        replied = TicketReplied.model_validate(data)
        if replied.ticket.channel == Channel.chat:
            hub.publish(replied.ticket.id, chat_item(replied.message))

    def push_chat_csat_request(data: dict) -> None:
        asked = TicketCsatRequested.model_validate(data)
        if asked.ticket.channel == Channel.chat:
            hub.publish(asked.ticket.id, chat_item(asked.message))

    rt.tail(
        name="hear",
        topic=topics.TICKETS_NOTICES,
        schema=TicketEventRecord,
        handlers={
            EventType.TICKET_REPLIED: push_chat_reply,
            EventType.TICKET_CSAT_REQUESTED: push_chat_csat_request,
            EventType.CUSTOMER_CHANGED: lambda data: customers.apply(CustomerChanged.model_validate(data)),
            EventType.CUSTOMER_ERASED: lambda data: customers.forget(CustomerErased.model_validate(data)),
        },
        description="What every instance hears of: replies for the chat widgets connected to it, and changes "
        "of who is who (erased customers included)",
    )

    async def learn() -> None:
        customers.load(await store.all_links())
        processor.partitions = bus.partitions = await rt.producer.partitions_for(topics.INGEST_MESSAGES)

    rt.on_start.append(store.ensure_indexes)
    rt.on_connected.append(learn)
    rt.loops.append(bus.tail().run)

    async def flush_lists() -> int:
        return await processor.flush_docs(exclusive=filing.exclusive)

    async def sweep() -> int:
        async with filing.exclusive():
            return await processor.sweep()

    rt.every(0.25, flush_lists, "")
    rt.every(1.0, sweep, "ticket(s) woken up or closed")
    rt.every(1.0, delivery.retry_due, "delivery attempt(s) retried")
    rt.every(60.0, lambda: learn(), "")  # who is who, read again in case an event was missed between load and tail
    auth = require_token(rt)
    return create_http_app(
        rt,
        title="deskstream tickets",
        description="Ticket lifecycle, timeline, customers, the agent API, and the chat "
        "endpoints a customer's widget reads agents' replies from.",
        routers=[
            api.build_router(store, deliveries, bus, customers, auth, publish_customer=publish_customer),
            build_credentials_router(auth),
            build_privacy_router(
                Erasure(
                    store=store,
                    deliveries=deliveries,
                    bus=bus,
                    customers=customers,
                    shredder=shredder,
                    send=send,
                    source=rt.source,
                ),
                auth,
            ),
            build_chat_router(hub, store, delivery, ChatTokens(chat_key(settings))),
            build_csat_router(
                bus=bus,
                store=store,
                surveys=surveys,
                settings_store=csat_store,
                auth=auth,
                announce=lambda: rt.announce_settings("csat"),
            ),
            build_webhooks_router(
                webhooks,
                auth,
                allow_private=settings.webhooks_allow_private,
                bootstrap_servers=settings.kafka_bootstrap_servers,
                partitions=rt.producer.partitions_for,
                announce=lambda: rt.announce_settings("webhooks"),
                vault=vault,
            ),
        ],
    )
