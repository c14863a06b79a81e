"""Which ticket a message lands in, on the real MongoDB-wire server."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.tickets.domain import Status, ThreadingPolicy
from services.tickets.service import TicketService
from services.tickets.store import TicketStore
from shared.events import Channel, CustomerRef, Identity, MessageReceived
from shared.outbox import Outbox

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


async def _noop(topic, event, key):
    return None


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def service(mongo, clock):
    store = TicketStore(mongo)
    await store.ensure_indexes()
    return TicketService(store=store, outbox=Outbox(store.tickets, _noop), source="test", clock=clock,
                         threading=ThreadingPolicy(window_s=3600, reopen_window_s=3600))


def email(n: int, *, sender="noura@example.com", in_reply_to=None, references=(), subject="Order 10442",
          ticket_ref=None) -> MessageReceived:
    own = f"mail-{n}@example.com"
    root = (list(references) or [in_reply_to] if in_reply_to or references else [own])[0]
    return MessageReceived(
        message_id=f"msg-mail-{n}", channel=Channel.email, external_id=own, thread_key=f"email:{root}",
        customer=CustomerRef(name="Noura", identities=[Identity(kind="email", value=sender)]),
        subject=subject, text=f"mail {n}", in_reply_to=in_reply_to, references=list(references),
        ticket_ref=ticket_ref, sent_at=T0, received_at=T0)


def sms(n: int, phone="+966500000001", at: datetime = T0) -> MessageReceived:
    return MessageReceived(
        message_id=f"msg-sms-{n}", channel=Channel.sms, external_id=f"SM{n}", thread_key=f"sms:{phone}",
        customer=CustomerRef(identities=[Identity(kind="phone", value=phone)]), text=f"sms {n}",
        sent_at=at, received_at=at)


async def test_an_email_reply_joins_the_ticket_of_the_mail_it_answers(service):
    first = await service.file_message(email(1))
    reply = await service.file_message(email(2, in_reply_to="mail-1@example.com",
                                             references=["mail-1@example.com"]))
    assert reply == first
    assert [m.text for m in (await service.store.load(first)).messages] == ["mail 1", "mail 2"]


async def test_a_quoted_ticket_reference_joins_that_ticket_only_for_its_own_customer(service):
    first = await service.file_message(email(1))
    same_customer = await service.file_message(email(2, subject=f"Re: [#{first}] hello", ticket_ref=first))
    stranger = await service.file_message(email(3, sender="mallory@example.com", ticket_ref=first))
    assert same_customer == first and stranger != first


async def test_sms_joins_the_open_ticket_within_the_window_then_starts_a_linked_one(service, clock):
    first = await service.file_message(sms(1))
    clock.now = T0 + timedelta(minutes=30)
    assert await service.file_message(sms(2, at=clock.now)) == first
    clock.now = T0 + timedelta(hours=3)
    later = await service.file_message(sms(3, at=clock.now))
    assert later != first
    ticket = await service.store.load(later)
    assert ticket.follows == first and ticket.timeline[0].details["follows"] == first
    clock.now += timedelta(minutes=1)
    assert await service.file_message(sms(4, at=clock.now)) == later
    assert await service.file_message(sms(2, at=T0 + timedelta(minutes=30))) == first  # a redelivery stays put


async def test_a_message_to_a_closed_ticket_starts_a_new_one(service):
    first = await service.file_message(sms(1))
    await service.change_status(first, status=Status.resolved, actor="a1", until=None)
    await service.change_status(first, status=Status.closed, actor="a1", until=None)
    follow_up = await service.file_message(sms(2))
    assert follow_up != first
    assert (await service.store.load(first)).status == Status.closed


async def test_one_customer_across_web_form_mail_sms_and_whatsapp(service):
    form = MessageReceived(message_id="msg-form", channel=Channel.webform, external_id="f1", thread_key="webform:f1",
                           customer=CustomerRef(name="Noura", identities=[Identity(kind="email", value="noura@example.com")]),
                           text="form", sent_at=T0, received_at=T0)
    wa = MessageReceived(message_id="msg-wa", channel=Channel.whatsapp, external_id="wamid.1",
                         thread_key="whatsapp:966500000001",
                         customer=CustomerRef(identities=[Identity(kind="whatsapp", value="966500000001"),
                                                          Identity(kind="phone", value="+966500000001"),
                                                          Identity(kind="email", value="noura@example.com")]),
                         text="wa", sent_at=T0, received_at=T0)
    tickets = [await service.file_message(m) for m in (form, email(1), sms(1), wa)]
    views = [await service.store.get_view(t) for t in tickets]
    customers = {v["customer"]["id"] for v in views}
    assert len(customers) == 1  # the WhatsApp message carried phone and email: one customer
    profile = await service.store.customer_view(customers.pop())
    assert {"email:noura@example.com", "phone:+966500000001", "whatsapp:966500000001"} <= set(profile["identities"])
    assert {t["id"] for t in profile["tickets"]} == set(tickets)
    assert all(profile["id"] == v["customer"]["id"] for v in views)


async def test_an_explicit_merge_puts_two_profiles_and_their_tickets_together(service):
    mail_ticket = await service.file_message(email(1))
    sms_ticket = await service.file_message(sms(1))
    a = (await service.store.get_view(mail_ticket))["customer"]["id"]
    b = (await service.store.get_view(sms_ticket))["customer"]["id"]
    assert a != b
    await service.store.merge_customers(a, b, now=T0, locks=service.locks)
    for customer_id in (a, b):  # the merged id still leads to the one profile
        profile = await service.store.customer_view(customer_id)
        assert profile["id"] == a and {t["id"] for t in profile["tickets"]} == {mail_ticket, sms_ticket}
    later = await service.file_message(sms(2))
    assert (await service.store.get_view(later))["customer"]["id"] == a
