"""Which ticket a message lands in, on the real MongoDB-wire server."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.tickets.domain import Status
from services.tickets.store import TicketStore
from shared.events import Channel, CustomerRef, Identity, MessageReceived, inbound_message_id
from tests.integration.harness import T0, Tickets

pytestmark = pytest.mark.integration


@pytest.fixture
async def service(storage):
    store = TicketStore(storage)
    await store.ensure_indexes()
    return Tickets(store)


def email(n: int, *, sender="noura@example.com", in_reply_to=None, references=(), subject="Order 10442",
          ticket_ref=None) -> MessageReceived:
    own = f"mail-{n}@example.com"
    root = (list(references) or [in_reply_to] if in_reply_to or references else [own])[0]
    return MessageReceived(
        message_id=inbound_message_id("email", own), channel=Channel.email, external_id=own,
        thread_key=f"email:{root}",
        customer=CustomerRef(name="Noura", identities=[Identity(kind="email", value=sender)]),
        subject=subject, text=f"mail {n}", in_reply_to=in_reply_to, references=list(references),
        ticket_ref=ticket_ref, sent_at=T0, received_at=T0)


def sms(n: int, phone="+966500000001", at: datetime = T0) -> MessageReceived:
    return MessageReceived(
        message_id=f"msg-sms-{n}", channel=Channel.sms, external_id=f"SM{n}", thread_key=f"sms:{phone}",
        customer=CustomerRef(identities=[Identity(kind="phone", value=phone)]), text=f"sms {n}",
        sent_at=at, received_at=at)


async def test_an_email_reply_joins_the_ticket_of_the_mail_it_answers(service):
    first = await service.file(email(1))
    reply = await service.file(email(2, in_reply_to="mail-1@example.com", references=["mail-1@example.com"]))
    assert reply == first
    # a mailer that dropped References: the mail it answers is looked up by its Message-ID
    answer = await service.file(email(3, in_reply_to="mail-2@example.com"))
    assert answer == first
    assert [m.text for m in (await service.load(first)).messages] == ["mail 1", "mail 2", "mail 3"]


async def test_a_quoted_ticket_reference_joins_that_ticket_only_for_its_own_customer(service):
    first = await service.file(email(1))
    same_customer = await service.file(email(2, subject=f"Re: [#{first}] hello", ticket_ref=first))
    stranger = await service.file(email(3, sender="mallory@example.com", ticket_ref=first))
    assert same_customer == first and stranger != first


async def test_sms_joins_the_open_ticket_within_the_window_then_starts_a_linked_one(service):
    first = await service.file(sms(1))
    service.now = T0 + timedelta(minutes=30)
    assert await service.file(sms(2, at=service.now)) == first
    service.now = T0 + timedelta(hours=3)
    later = await service.file(sms(3, at=service.now))
    assert later != first
    ticket = await service.load(later)
    assert ticket.follows == first and ticket.timeline[0].details["follows"] == first
    service.now += timedelta(minutes=1)
    assert await service.file(sms(4, at=service.now)) == later
    assert await service.file(sms(2, at=T0 + timedelta(minutes=30))) == first  # a redelivery stays put


async def test_a_message_to_a_closed_ticket_starts_a_new_one(service):
    first = await service.file(sms(1))
    await service.status(first, "resolved")
    await service.status(first, "closed")
    follow_up = await service.file(sms(2))
    assert follow_up != first
    assert (await service.load(first)).status == Status.closed


async def test_a_web_form_claim_links_nothing_and_verified_identities_make_one_customer(service):
    form = MessageReceived(message_id="msg-form", channel=Channel.webform, external_id="f1", thread_key="webform:f1",
                           customer=CustomerRef(name="Noura", identities=[
                               Identity(kind="email", value="noura@example.com"),
                               Identity(kind="phone", value="+966500000001")]),
                           text="form", sent_at=T0, received_at=T0)
    wa = MessageReceived(message_id="msg-wa", channel=Channel.whatsapp, external_id="wamid.1",
                         thread_key="whatsapp:966500000001",
                         customer=CustomerRef(identities=[Identity(kind="whatsapp", value="966500000001"),
                                                          Identity(kind="phone", value="+966500000001")]),
                         text="wa", sent_at=T0, received_at=T0)
    tickets = [await service.file(m) for m in (form, email(1), sms(1), wa)]
    by_address, by_number = {(await service.load(t)).customer.id for t in tickets[:2]}, \
        {(await service.load(t)).customer.id for t in tickets[2:]}
    assert len(by_address) == len(by_number) == 1 and by_address != by_number  # the claimed number is a hint
    proven = MessageReceived(message_id="msg-proven", channel=Channel.email, external_id="p1", thread_key="email:p1",
                             customer=CustomerRef(name="Noura", identities=[
                                 Identity(kind="email", value="noura@example.com", verified=True),
                                 Identity(kind="phone", value="+966500000002", verified=True)]),
                             text="proven", sent_at=T0, received_at=T0)
    await service.file(proven)
    later = await service.file(sms(3, phone="+966500000002"))
    assert (await service.load(later)).customer.id in by_address
