"""Erasure and purge over in-memory stores: a ticket erased in any status, a purge taking the files no
other ticket refers to, a customer erased with the profiles merged into it (and nobody else), and
SLA and routing dropping their copies. (The same on the real stack, with a scan of every collection
for the customer's address, number and name: tests/e2e/test_privacy.py.)"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.tickets.customers import CustomerBook, link_rows
from services.tickets.delivery.store import DeliveryStore
from services.tickets.erasure import Erasure, Shredder
from services.tickets.processor import DocPolicy, TicketsProcessor
from services.tickets.store import TicketStore
from services.tickets.views import load_ticket
from shared import topics
from shared.events import (
    AssignTicket, Attachment, ChangeTicketStatus, Channel, CommandOutcome, CustomerChanged, CustomerErased,
    CustomerRef, EraseTicket, EventType, Identity, MessageReceived, PurgeTicket, TicketPurged,
)
from shared.kafka import partition_of
from shared.storage import Storage
from tests.unit.memory import MemoryMongo, Records, SentRecords, run
from tests.unit.test_routing_dispatch import Routing, ticket as routing_ticket
from tests.unit.test_sla_service import Sla, ticket as sla_ticket

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PARTITIONS = 6
SHARED, OWN, RAW = "blob:" + "a" * 64, "blob:" + "b" * 64, "blob:" + "c" * 64


def mail(message_id: str, address: str, *, name: str = "Noura Al-Harbi", files: tuple[str, ...] = (),
         raw: str | None = None) -> MessageReceived:
    return MessageReceived(
        message_id=message_id, channel=Channel.email, external_id=message_id, thread_key=f"email:{message_id}",
        customer=CustomerRef(name=name, identities=[Identity(kind="email", value=address, verified=True)]),
        subject=f"Order for {name}", text="Where is my order?", raw_ref=raw, sent_at=T0, received_at=T0,
        attachments=[Attachment(filename="invoice.pdf", media_type="application/pdf", sha256=ref[5:], content_ref=ref)
                     for ref in files])


class Desk:
    """One tickets process owning every partition, its delivery store and the erasure, over in-memory
    stores that pack journal entries as on FerretDB."""

    def __init__(self) -> None:
        mongo = MemoryMongo()
        mongo.ferretdb = True
        self.storage = Storage(mongo)  # type: ignore[arg-type]
        self.storage.learn()
        self.store = TicketStore(self.storage)
        self.deliveries = DeliveryStore(mongo)  # type: ignore[arg-type]
        self.sent = SentRecords()
        self.shredder = Shredder(store=self.store, deliveries=self.deliveries, send=self.sent.send_many,
                                 source="deskstream/tickets")
        self.processor = TicketsProcessor(store=self.store, producer=self.sent, bootstrap_servers="unused",
                                          source="deskstream/tickets", docs=DocPolicy(new_delay=timedelta(0)),
                                          clock=lambda: T0, shredder=self.shredder)
        self.processor.partitions = PARTITIONS
        self.processor.install(set(range(PARTITIONS)), {p: ({}, {}) for p in range(PARTITIONS)})
        self.customers: CustomerBook = self.processor.customers
        self.records = Records()
        self.erasure = Erasure(store=self.store, deliveries=self.deliveries, bus=self, customers=self.customers,
                               shredder=self.shredder, send=self.sent.send_many, source="deskstream/tickets")

    async def file(self, msg: MessageReceived) -> str:
        record = self.records.record(topics.INGEST_MESSAGES, EventType.MESSAGE_RECEIVED, msg,
                                     partition=partition_of(msg.thread_key, PARTITIONS), key=msg.thread_key,
                                     id_=msg.message_id, at=T0)
        assert (await run(self.processor, record)).rejected == []
        return (await self.store.entry(msg.message_id))["ticket_id"]

    # the command bus, as the erasure uses it: straight into the owning processor
    async def send(self, type_: str, command) -> CommandOutcome:
        command.request_id = f"req-{command.command_id}"
        await run(self.processor, self.records.record(
            topics.TICKETS_COMMANDS, type_, command, partition=partition_of(command.ticket_id, PARTITIONS),
            key=command.ticket_id, at=T0))
        outcomes = [e["data"] for e in self.sent.events(topics.TICKETS_OUTCOMES)]
        return CommandOutcome.model_validate([o for o in outcomes if o["request_id"] == command.request_id][-1])

    async def refresh_lists(self) -> None:
        await self.processor.flush_docs(everything=True)

    def events(self, type_: str, topic: str = topics.TICKETS_EVENTS) -> list[dict]:
        return [e for e in self.sent.events(topic) if e["type"] == type_]

    def stored(self) -> str:
        """Every document of every collection, as text."""
        return repr({name: c.docs for name, c in self.storage.mongo.collections.items()})

    def collection(self, name: str) -> dict:
        return self.storage.mongo.collections[name].docs


@pytest.fixture
def desk() -> Desk:
    return Desk()


async def test_an_erased_ticket_is_gone_in_any_status_and_the_other_services_are_told(desk):
    tid = await desk.file(mail("m1", "noura@example.com"))
    await desk.refresh_lists()
    outcome = await desk.send(EventType.ERASE_TICKET, EraseTicket(command_id="e1", ticket_id=tid, actor="admin"))
    assert outcome.status == 202
    purged = desk.events(EventType.TICKET_PURGED)
    assert [(e["subject"], e["data"]["reason"]) for e in purged] == [(tid, "erasure")]
    assert await desk.store.entries_of([tid]) == []
    tombstone = desk.collection("tickets")[tid]
    assert tombstone["purged"] is True and "customer" not in tombstone and "subject" not in tombstone
    again = await desk.send(EventType.ASSIGN_TICKET, AssignTicket(command_id="a1", ticket_id=tid, agent_id="layla"))
    assert again.status == 404


async def test_a_purge_takes_the_tickets_files_delivery_records_and_reply_ids_but_not_a_file_another_shares(desk):
    mine = await desk.file(mail("m1", "noura@example.com", files=(SHARED, OWN), raw=RAW))
    theirs = await desk.file(mail("m2", "omar@example.com", files=(SHARED,)))
    for ref in (SHARED, OWN):  # the same bytes kept as an agent's file too
        desk.collection("ticket_blobs")[ref[5:]] = {"_id": ref[5:], "data": b"%PDF", "media_type": "application/pdf"}
    for tid, reply in ((mine, "out_1"), (theirs, "out_2")):
        await desk.store.index_external("email", f"{reply}@shop.example", tid)
        await desk.deliveries.record_outcome(reply, ticket_id=tid, state="sent", detail="relayed to someone",
                                             provider_id=None, attempts=1, now=T0)
        await desk.deliveries.claim(reply, 1, T0)

    assert (await desk.send(EventType.CHANGE_TICKET_STATUS, ChangeTicketStatus(
        command_id="d1", ticket_id=mine, status="deleted", actor="admin"))).status == 200
    purge = PurgeTicket(command_id="p1", ticket_id=mine, actor="admin")
    assert (await desk.send(EventType.PURGE_TICKET, purge)).status == 202

    erased = desk.events(EventType.ERASE_BLOBS, topics.PRIVACY_ERASURES)
    assert [sorted(e["data"]["blob_refs"]) for e in erased] == [sorted([OWN, RAW])]
    assert set(desk.collection("ticket_blobs")) == {SHARED[5:]}
    assert [d["ticket_id"] for d in desk.collection("ticket_external_refs").values()] == [theirs]
    assert set(desk.collection("ticket_deliveries")) == {"out_2"}
    assert set(desk.collection("delivery_claims")) == {"out_2#1"}
    assert (await load_ticket(desk.store, theirs)).messages[0].attachments[0].content_ref == SHARED


async def test_erasing_a_customer_takes_every_ticket_and_merged_profile_and_nothing_of_anyone_else(desk):
    by_mail = await desk.file(mail("m1", "noura@example.com", files=(OWN,)))
    by_phone = await desk.file(MessageReceived(
        message_id="s1", channel=Channel.sms, external_id="s1", thread_key="sms:+966500000001",
        customer=CustomerRef(identities=[Identity(kind="phone", value="+966500000001", verified=True)]),
        text="Any news?", sent_at=T0, received_at=T0))
    other = await desk.file(mail("m3", "omar@example.com", name="Omar"))
    await desk.refresh_lists()
    noura = desk.collection("tickets")[by_mail]["customer"]["id"]
    phone = desk.collection("tickets")[by_phone]["customer"]["id"]
    omar = desk.collection("tickets")[other]["customer"]["id"]
    for change in (CustomerChanged(customer_id=phone, merged_into=noura, at=T0),
                   CustomerChanged(customer_id=noura, identities=["phone:+966500000001"], tier="vip", tier_set=True,
                                   at=T0),
                   CustomerChanged(customer_id=omar, tier="gold", tier_set=True, at=T0)):
        desk.customers.apply(change)
        for key, value in link_rows(change):
            await desk.store.put_link(key, value)

    exported = await desk.erasure.export(phone)  # a merged profile's id leads to the live one
    assert exported["customer"]["id"] == noura and exported["customer"]["merged_ids"] == [phone]
    assert {"email:noura@example.com", "phone:+966500000001"} <= set(exported["identities"])
    assert {m["text"] for t in exported["tickets"] for m in t["messages"]} == {"Where is my order?", "Any news?"}
    assert [a["content_ref"] for a in exported["attachments"]] == [OWN]

    assert all(text in desk.stored() for text in ("noura@example.com", "966500000001", "Noura"))
    result = await desk.erasure.erase(noura, actor="admin")
    assert result["tickets"] == 2 and result["merged_ids"] == [phone]
    erased = desk.events(EventType.CUSTOMER_ERASED)
    assert [e["subject"] for e in erased] == [noura]
    assert sorted(erased[0]["data"]["ticket_ids"]) == sorted([by_mail, by_phone])
    assert {"email:noura@example.com", "phone:+966500000001"} <= set(erased[0]["data"]["identities"])
    assert erased[0]["data"]["blob_refs"] == [OWN]
    assert {e["subject"] for e in desk.events(EventType.TICKET_PURGED)} == {by_mail, by_phone}

    assert await desk.erasure.export(noura) is None and await desk.erasure.erase(noura, actor="admin") is None
    assert desk.customers.with_merged(noura) == [noura] and noura not in desk.customers.tiers
    assert not any(text in desk.stored() for text in ("noura@example.com", "966500000001", "Noura"))
    assert desk.customers.tiers[omar] == "gold" and "tier:" + omar in desk.collection("customer_links")
    assert (await load_ticket(desk.store, other)).customer.name == "Omar"


def test_a_customer_book_forgets_an_erased_customer_and_the_profiles_merged_into_it():
    book = CustomerBook()
    for change in (CustomerChanged(customer_id="CU-B", merged_into="CU-A", at=T0),
                   CustomerChanged(customer_id="CU-A", identities=["phone:+9665"], tier="vip", tier_set=True, at=T0),
                   CustomerChanged(customer_id="CU-C", identities=["chat:v9"], at=T0)):
        book.apply(change)
    assert book.with_merged("CU-B") == ["CU-A", "CU-B"]
    book.forget(CustomerErased(customer_id="CU-A", merged_ids=["CU-B"], at=T0))
    assert book.links == {"chat:v9": "CU-C"} and book.tiers == {} and book.merged == {}
    assert book.with_merged("CU-B") == ["CU-B"]


async def test_sla_drops_the_clocks_of_a_purged_or_erased_ticket_and_owes_no_event_about_it():
    sla = Sla()
    await sla.own()
    await sla.event(EventType.TICKET_CREATED, sla_ticket("TK-1"))
    await sla.event(EventType.TICKET_CREATED, sla_ticket("TK-2"))
    assert {c["ticket_id"] for c in sla.clock_docs().values()} == {"TK-1", "TK-2"}
    purged = TicketPurged(ticket_id="TK-1", customer_id="CU-1", at=T0, reason="erasure")
    record = sla.records.record(topics.TICKETS_EVENTS, EventType.TICKET_PURGED, purged,
                                partition=partition_of("TK-1", 6), key="TK-1", at=T0)
    assert (await run(sla.service, record)).rejected == []
    assert {c["ticket_id"] for c in sla.clock_docs().values()} == {"TK-2"}
    assert await sla.service.ticket_clocks("TK-1") == []
    await sla.at(T0 + timedelta(hours=1))
    assert {subject for subject, _ in sla.kinds()} == {"TK-2"}


async def test_routing_forgets_who_served_an_erased_customer_but_not_after_a_purge():
    routing = Routing()
    await routing.agent("ana", capacity=3)
    for tid, customer in (("t1", "c1"), ("t2", "c2")):
        await routing.created(routing_ticket(tid, customer=customer), "hello")
    served = routing.dispatcher.state
    assert ("C:c1" in served.keys(0)) and ("C:c2" in served.keys(0))
    for tid, customer, reason in (("t1", "c1", "erasure"), ("t2", "c2", "purge")):
        await routing.ticket_event(EventType.TICKET_PURGED, TicketPurged(ticket_id=tid, customer_id=customer, at=T0,
                                                                        reason=reason), tid)
    assert "C:c1" not in served.keys(0) and "C:c2" in served.keys(0)
    assert routing.load("ana") == []
