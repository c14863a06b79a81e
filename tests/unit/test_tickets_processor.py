"""The tickets stream processor over in-memory stores: filing, commands and their outcomes, SLA marks,
replays, the lists and who is who — what one batch decides and what it writes and sends.
(The same paths on the real broker and database: tests/integration/test_stream_ownership.py, tests/e2e.)"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.tickets.domain import Status, ThreadingPolicy
from services.tickets.processor import PARK_FOR, DocPolicy, TicketsProcessor
from services.tickets.store import TicketStore
from services.tickets.views import load_ticket
from shared import topics
from shared.events import (
    AddTicketNote, AssignTicket, ChangeTicketStatus, Channel, CustomerRef, EventType, Identity, MessageReceived, ReplyToTicket,
    SlaTarget, SlaTargetEvent,
)
from shared.kafka import partition_of
from tests.unit.memory import Records, SentRecords, memory_storage, run

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PARTITIONS = 6


def chat(message_id: str, session: str = "s1", text: str = "Where is my order?", *, visitor: str = "v1",
         email: str | None = None, ticket_ref: str | None = None, at: datetime = T0) -> MessageReceived:
    identities = [Identity(kind="chat", value=visitor)]
    if email:
        identities.insert(0, Identity(kind="email", value=email))
    return MessageReceived(message_id=message_id, channel=Channel.chat, external_id=message_id,
                           thread_key=f"chat:{session}", customer=CustomerRef(name="Noura", identities=identities),
                           text=text, ticket_ref=ticket_ref, sent_at=at, received_at=at)


class Stack:
    """One tickets process owning every partition, over in-memory stores."""

    def __init__(self, hot: int = 5000, hold: int = 20_000) -> None:
        self.store = TicketStore(memory_storage())
        self.sent = SentRecords()
        self.now = T0
        self.processor = TicketsProcessor(store=self.store, producer=self.sent, bootstrap_servers="unused",
                                          source="deskstream/tickets", threading=ThreadingPolicy(),
                                          docs=DocPolicy(new_delay=timedelta(seconds=1), changed_delay=timedelta(seconds=10),
                                                         keep_closed=timedelta(days=7)),
                                          hot=hot, hold=hold, clock=lambda: self.now)
        self.processor.partitions = PARTITIONS
        self.processor.install(set(range(PARTITIONS)), {p: ({}, {}) for p in range(PARTITIONS)})
        self.records = Records()

    def message(self, msg: MessageReceived, *, at: datetime = T0):
        return self.records.record(topics.INGEST_MESSAGES, EventType.MESSAGE_RECEIVED, msg,
                                   partition=partition_of(msg.thread_key, PARTITIONS), key=msg.thread_key,
                                   id_=msg.message_id, at=at)

    def command(self, type_: str, command, *, at: datetime = T0):
        return self.records.record(topics.TICKETS_COMMANDS, type_, command,
                                   partition=partition_of(command.ticket_id, PARTITIONS), key=command.ticket_id, at=at)

    async def file(self, msg: MessageReceived) -> str:
        batch = await run(self.processor, self.message(msg))
        assert batch.rejected == []
        entry = await self.store.entry(msg.message_id)
        return entry["ticket_id"]


@pytest.fixture
def stack() -> Stack:
    return Stack()


async def test_a_message_opens_a_ticket_on_its_conversations_partition_and_journals_it(stack):
    ticket_id = await stack.file(chat("m1"))
    assert partition_of(ticket_id, PARTITIONS) == partition_of("chat:s1", PARTITIONS)
    created = stack.sent.events(topics.TICKETS_EVENTS)
    assert [e["type"] for e in created] == [EventType.TICKET_CREATED] and created[0]["subject"] == ticket_id
    ticket = await load_ticket(stack.store, ticket_id)
    assert ticket.status == Status.new and [m.text for m in ticket.messages] == ["Where is my order?"]
    assert [e.type for e in ticket.timeline] == ["created", "message_received"]
    changelog = [r for r in stack.sent.records if r.topic == topics.TICKETS_STATE]
    assert {r.key for r in changelog} >= {f"T:{ticket_id}", "thread:chat:s1", "__applied__"}


async def test_later_messages_join_the_ticket_and_a_redelivered_one_changes_nothing(stack):
    ticket_id = await stack.file(chat("m1"))
    assert await stack.file(chat("m2", text="Any news?")) == ticket_id
    stack.sent.clear()
    await run(stack.processor, stack.message(chat("m2", text="Any news?")))
    assert stack.sent.events(topics.TICKETS_EVENTS) == []
    ticket = await load_ticket(stack.store, ticket_id)
    assert [m.message_id for m in ticket.messages] == ["m1", "m2"]


async def test_a_replayed_batch_the_changelog_already_holds_sends_nothing_again(stack):
    first = stack.message(chat("m1"))
    await run(stack.processor, first)
    stack.sent.clear()
    await run(stack.processor, first)  # the same record again: a replay after a crash before the commit
    assert stack.sent.events(topics.TICKETS_EVENTS) == []


async def test_an_agents_reply_is_answered_with_its_outcome_and_journaled_under_its_message_id(stack):
    ticket_id = await stack.file(chat("m1"))
    reply = ReplyToTicket(command_id="out_1", ticket_id=ticket_id, message_id="out_1", agent_id="a1",
                          text="On its way", request_id="r1")
    await run(stack.processor, stack.command(EventType.REPLY_TO_TICKET, reply))
    outcome = stack.sent.events(topics.TICKETS_OUTCOMES)[-1]["data"]
    assert outcome["request_id"] == "r1" and outcome["status"] == 201 and outcome["result"]["status"] == "answered"
    assert (await stack.store.entry("out_1"))["ticket_id"] == ticket_id
    assert (await load_ticket(stack.store, ticket_id)).status == Status.answered
    stack.sent.clear()
    await run(stack.processor, stack.command(EventType.REPLY_TO_TICKET, reply.model_copy(update={"request_id": "r2"})))
    again = stack.sent.events(topics.TICKETS_OUTCOMES)[-1]["data"]
    assert again["status"] == 200 and again["result"]["duplicate"] is True  # a retried request: no second reply
    assert stack.sent.events(topics.TICKETS_EVENTS) == []


async def test_a_command_for_a_ticket_that_does_not_exist_gets_404_or_a_dead_letter(stack):
    unknown = "TK-000000000000"
    asked = ChangeTicketStatus(command_id="c1", ticket_id=unknown, status="resolved", actor="a1", request_id="r1")
    await run(stack.processor, stack.command(EventType.CHANGE_TICKET_STATUS, asked))
    assert stack.sent.events(topics.TICKETS_OUTCOMES)[-1]["data"]["status"] == 404
    # a command of another service waits for its ticket (it may be opened by a message still to be replayed)
    batch = await run(stack.processor, stack.command(EventType.ASSIGN_TICKET, AssignTicket(
        command_id="c2", ticket_id=unknown, agent_id="a1")))
    assert batch.rejected == [] and stack.sent.events(topics.DEADLETTER) == []
    stack.now = T0 + PARK_FOR - timedelta(seconds=1)
    await stack.processor.sweep()
    assert stack.sent.events(topics.DEADLETTER) == []
    stack.now = T0 + PARK_FOR
    await stack.processor.sweep()
    letters = stack.sent.events(topics.DEADLETTER)
    assert len(letters) == 1 and "ticket TK-000000000000 does not exist" in letters[0]["data"]["reason"]
    assert letters[0]["data"]["source_topic"] == topics.TICKETS_COMMANDS
    await stack.processor.sweep()
    assert len(stack.sent.events(topics.DEADLETTER)) == 1


async def test_an_assignment_that_comes_before_its_tickets_replayed_message_is_applied_when_the_ticket_opens(stack):
    # after a crash between sending ticket.created and the changelog write, the message is replayed, and
    # routing's assignment (caused by the first ticket.created) may be read before it
    msg = chat("m1")
    first = Stack()
    ticket_id = await first.file(msg)
    assign = AssignTicket(command_id="c1", ticket_id=ticket_id, agent_id="a1", actor="routing")
    batch = await run(stack.processor, stack.command(EventType.ASSIGN_TICKET, assign))
    assert batch.rejected == [] and stack.sent.events(topics.TICKETS_EVENTS) == []
    assert await stack.file(msg) == ticket_id
    types = [e["type"] for e in stack.sent.events(topics.TICKETS_EVENTS)]
    assert types == [EventType.TICKET_CREATED, EventType.TICKET_ASSIGNED]
    assert (await load_ticket(stack.store, ticket_id)).assignee == "a1"
    stack.now = T0 + PARK_FOR
    await stack.processor.sweep()
    assert stack.sent.events(topics.DEADLETTER) == []


async def test_an_sla_breach_that_comes_before_its_tickets_replayed_message_is_recorded_when_it_opens(stack):
    msg = chat("m1")
    ticket_id = await Stack().file(msg)
    breach = SlaTargetEvent(ticket_id=ticket_id, target=SlaTarget.first_response, policy_id="default", at=T0,
                            due_at=T0)
    await run(stack.processor, stack.records.record(topics.SLA_EVENTS, EventType.SLA_BREACHED, breach, id_="sla-1",
                                                    partition=partition_of(ticket_id, PARTITIONS), key=ticket_id))
    assert await stack.file(msg) == ticket_id
    assert (await load_ticket(stack.store, ticket_id)).sla == {"first_response": "breached"}


async def test_a_waiting_command_outlives_a_restart(stack):
    msg = chat("m1")
    ticket_id = await Stack().file(msg)
    await run(stack.processor, stack.command(EventType.ASSIGN_TICKET, AssignTicket(
        command_id="c1", ticket_id=ticket_id, agent_id="a1", actor="routing")))
    again = restarted(stack)
    assert await again.file(msg) == ticket_id
    assert (await load_ticket(again.store, ticket_id)).assignee == "a1"
    other = restarted(stack)  # and one that waits in vain goes to the dead letters in time
    other.now = T0 + PARK_FOR
    await other.processor.sweep()
    assert len(other.sent.events(topics.DEADLETTER)) == 1


async def test_a_change_the_lifecycle_forbids_is_refused_with_409(stack):
    ticket_id = await stack.file(chat("m1"))
    closed = ChangeTicketStatus(command_id="c1", ticket_id=ticket_id, status="closed", actor="a1", request_id="r1")
    await run(stack.processor, stack.command(EventType.CHANGE_TICKET_STATUS, closed))
    outcome = stack.sent.events(topics.TICKETS_OUTCOMES)[-1]["data"]
    assert outcome["status"] == 409 and "cannot go from new to closed" in outcome["message"]


async def test_sla_breaches_go_on_the_timeline_once(stack):
    ticket_id = await stack.file(chat("m1"))
    breach = SlaTargetEvent(ticket_id=ticket_id, target=SlaTarget.first_response, policy_id="default", at=T0,
                            due_at=T0)
    record = stack.records.record(topics.SLA_EVENTS, EventType.SLA_BREACHED, breach, id_="sla-1",
                                  partition=partition_of(ticket_id, PARTITIONS), key=ticket_id)
    await run(stack.processor, record)
    again = stack.records.record(topics.SLA_EVENTS, EventType.SLA_BREACHED, breach, id_="sla-1",
                                 partition=partition_of(ticket_id, PARTITIONS), key=ticket_id)
    await run(stack.processor, again)
    ticket = await load_ticket(stack.store, ticket_id)
    assert ticket.sla == {"first_response": "breached"}
    assert [e.type for e in ticket.timeline].count("sla_breached") == 1


async def test_a_quoted_reference_to_another_partitions_ticket_is_filed_there(stack):
    first = await stack.file(chat("m1", session="s1"))
    other_session = next(f"s{n}" for n in range(2, 200)
                         if partition_of(f"chat:s{n}", PARTITIONS) != partition_of(first, PARTITIONS))
    stack.sent.clear()
    await run(stack.processor, stack.message(chat("m9", session=other_session, ticket_ref=first)))
    forwarded = stack.sent.events(topics.TICKETS_COMMANDS)
    assert [e["type"] for e in forwarded] == [EventType.FILE_MESSAGE] and forwarded[0]["subject"] == first
    record = stack.records.record(topics.TICKETS_COMMANDS, EventType.FILE_MESSAGE, forwarded[0]["data"],
                                  partition=partition_of(first, PARTITIONS), key=first)
    await run(stack.processor, record)
    assert [m.message_id for m in (await load_ticket(stack.store, first)).messages] == ["m1", "m9"]


def mail(message_id: str, sender: str, *, verified: bool, also: list[Identity] = (), thread: str | None = None,
         name: str = "Noura") -> MessageReceived:
    identities = [Identity(kind="email", value=sender, verified=verified), *also]
    return MessageReceived(message_id=message_id, channel=Channel.email, external_id=message_id,
                           thread_key=thread or f"email:{message_id}", text="My kettle is broken",
                           customer=CustomerRef(name=name, identities=identities), sent_at=T0, received_at=T0)


async def test_a_claimed_identity_attaches_nothing_and_stays_a_hint(stack):
    first = await load_ticket(stack.store, await stack.file(chat("m1", session="s1", email="noura@example.com",
                                                                 visitor="v1")))
    assert not [e for e in stack.sent.events(topics.TICKETS_EVENTS) if e["type"] == EventType.CUSTOMER_CHANGED]
    assert first.customer.identities == ["email:noura@example.com"] and first.customer.hints == ["chat:v1"]
    # the same address is the same customer; the visitor id it came with is not theirs
    other = await load_ticket(stack.store, await stack.file(chat("m2", session="s2", visitor="v1")))
    assert other.customer.id != first.customer.id


async def test_verified_identities_of_one_message_are_one_customer_and_the_link_is_announced(stack):
    phone = Identity(kind="phone", value="+966501234567", verified=True)
    a = await load_ticket(stack.store, await stack.file(mail("m1", "noura@example.com", verified=True, also=[phone])))
    changed = [e for e in stack.sent.events(topics.TICKETS_EVENTS) if e["type"] == EventType.CUSTOMER_CHANGED]
    assert changed and changed[0]["data"]["identities"] == ["phone:+966501234567"]
    sms = MessageReceived(message_id="m2", channel=Channel.sms, external_id="m2", thread_key="sms:+966501234567",
                          text="hello", customer=CustomerRef(identities=[phone]), sent_at=T0, received_at=T0)
    b = await load_ticket(stack.store, await stack.file(sms))
    assert a.customer.id == b.customer.id == changed[0]["data"]["customer_id"]


async def test_a_mail_into_another_customers_thread_gets_a_ticket_and_thread_of_its_own(stack):
    victim = await stack.file(mail("m1", "victim@example.com", verified=True, thread="email:<root@x>"))
    intruder = await stack.file(mail("m2", "intruder@example.com", verified=False, thread="email:<root@x>",
                                     name="Intruder"))
    assert intruder != victim
    assert [m.message_id for m in (await load_ticket(stack.store, victim)).messages] == ["m1"]
    # each goes on in their own ticket
    assert await stack.file(mail("m3", "victim@example.com", verified=True, thread="email:<root@x>")) == victim
    assert await stack.file(mail("m4", "intruder@example.com", verified=False, thread="email:<root@x>")) == intruder


async def test_list_documents_are_written_coalesced_and_at_once_when_a_list_is_read(stack):
    ticket_id = await stack.file(chat("m1"))
    assert await stack.processor.flush_docs() == 0  # younger than the delay: its assignment may come
    await run(stack.processor, stack.command(EventType.ASSIGN_TICKET, AssignTicket(
        command_id="c1", ticket_id=ticket_id, agent_id="a1")))
    stack.now = T0 + timedelta(seconds=2)
    assert await stack.processor.flush_docs() == 1
    doc = await stack.store.ticket_doc(ticket_id)
    assert doc["assignee"] == "a1" and doc["status"] == "new"  # one write with the assignment in it
    await stack.file(chat("m2", text="hello again"))
    assert await stack.processor.flush_docs() == 0  # activity alone waits
    assert await stack.processor.flush_docs(everything=True) == 1  # a list is being read


async def test_a_postponed_ticket_wakes_up_when_its_time_comes(stack):
    ticket_id = await stack.file(chat("m1"))
    await run(stack.processor, stack.command(EventType.CHANGE_TICKET_STATUS, ChangeTicketStatus(
        command_id="c1", ticket_id=ticket_id, status="postponed", until=T0 + timedelta(minutes=5), actor="a1")))
    stack.now = T0 + timedelta(minutes=4)
    assert await stack.processor.sweep() == 0
    stack.now = T0 + timedelta(minutes=6)
    assert await stack.processor.sweep() == 1
    ticket = await load_ticket(stack.store, ticket_id)
    assert ticket.status == Status.open and ticket.timeline[-1].actor == "scheduler"


async def test_a_payload_that_cannot_be_a_message_is_rejected_and_the_rest_of_the_batch_is_filed(stack):
    bad = stack.records.record(topics.INGEST_MESSAGES, EventType.MESSAGE_RECEIVED, {"channel": "pigeon"})
    good = stack.message(chat("m1"))
    batch = await run(stack.processor, bad, good)
    assert len(batch.rejected) == 1 and "channel" in batch.rejected[0][1]
    assert await stack.store.entry("m1") is not None


def restarted(stack: Stack) -> Stack:
    """A new process taking over every partition from what the changelog holds."""
    fresh = Stack(hot=stack.processor.state.hot or 5000, hold=stack.processor.hold)
    fresh.store, fresh.now, fresh.records = stack.store, stack.now, stack.records
    fresh.processor.store = stack.store
    state = fresh.processor.state
    loaded: dict[int, tuple[dict, dict]] = {p: ({}, {}) for p in range(PARTITIONS)}
    for r in stack.sent.records:
        if r.topic == topics.TICKETS_STATE:
            state.replay(*loaded[r.partition], r.key, r.value)
    fresh.processor.install(set(range(PARTITIONS)), loaded)
    return fresh


async def test_beyond_the_hot_tickets_the_others_are_held_encoded_and_their_conversations_go_on(stack):
    small = Stack(hot=3)
    first = {s: await small.file(chat(f"m1-{s}", session=f"s{s}", visitor=f"v{s}")) for s in range(10)}
    assert len(set(first.values())) == 10
    assert small.processor.state.decoded() <= 3  # the other seven as their changelog record
    second = {s: await small.file(chat(f"m2-{s}", session=f"s{s}", visitor=f"v{s}", text="Any news?")) for s in range(10)}
    assert second == first and small.processor.state.decoded() <= 3
    again = restarted(small)
    assert again.processor.state.decoded() == 0  # a restore decodes nothing up front
    third = {s: await again.file(chat(f"m3-{s}", session=f"s{s}", visitor=f"v{s}", text="Hello?")) for s in range(10)}
    assert third == first
    ticket = await load_ticket(again.store, first[4])
    assert [m.text for m in ticket.messages] == ["Where is my order?", "Any news?", "Hello?"]


async def test_resolved_tickets_close_and_closed_ones_are_let_go_of_even_when_held_encoded_or_restored():
    stack = Stack(hot=1)
    resolved = await stack.file(chat("m1", session="s1", visitor="v1"))
    await run(stack.processor, stack.command(EventType.CHANGE_TICKET_STATUS, ChangeTicketStatus(
        command_id="c1", ticket_id=resolved, status="resolved", actor="a1")))
    for s in range(2, 6):  # push it out of the decoded ones
        await stack.file(chat(f"m{s}", session=f"s{s}", visitor=f"v{s}"))
    stack = restarted(stack)
    stack.now = T0 + timedelta(hours=71)
    assert await stack.processor.sweep() == 0
    stack.now = T0 + timedelta(hours=73)
    assert await stack.processor.sweep() == 1
    assert (await load_ticket(stack.store, resolved)).status == Status.closed
    await stack.processor.flush_docs(everything=True)
    stack.now += timedelta(days=7, minutes=1)
    await stack.processor.sweep()
    assert not stack.processor._local(partition_of(resolved, PARTITIONS), resolved)  # noqa: SLF001
    open_ = await stack.store.entry("m3")
    assert stack.processor._local(partition_of(open_["ticket_id"], PARTITIONS), open_["ticket_id"])  # noqa: SLF001
    # a message of the closed conversation opens a new ticket
    newer = await stack.file(chat("m9", session="s1", visitor="v1", text="One more thing", at=stack.now))
    assert newer != resolved


async def test_a_command_for_a_ticket_let_go_of_reads_it_back_and_applies():
    stack = Stack()
    ticket_id = await stack.file(chat("m1"))
    await run(stack.processor, stack.command(EventType.CHANGE_TICKET_STATUS, ChangeTicketStatus(
        command_id="c1", ticket_id=ticket_id, status="spam", actor="a1")))
    await stack.processor.flush_docs(everything=True)
    stack.now = T0 + timedelta(days=7, minutes=1)
    await stack.processor.sweep()
    p = partition_of(ticket_id, PARTITIONS)
    assert not stack.processor._local(p, ticket_id)  # noqa: SLF001
    stack.sent.clear()
    await run(stack.processor, stack.command(EventType.ADD_TICKET_NOTE, AddTicketNote(
        command_id="c2", request_id="r2", ticket_id=ticket_id, note_id="n2", text="Refund sent", author="a1"), at=stack.now))
    [outcome] = stack.sent.events(topics.TICKETS_OUTCOMES)
    assert outcome["data"]["status"] == 201
    ticket = await load_ticket(stack.store, ticket_id)
    assert [n.text for n in ticket.notes] == ["Refund sent"] and ticket.status == Status.spam


async def test_beyond_what_a_process_holds_quiet_tickets_are_let_go_of_and_read_back_when_their_customer_writes():
    stack = Stack(hot=2, hold=4)
    first = {s: await stack.file(chat(f"m1-{s}", session=f"s{s}", visitor=f"v{s}")) for s in range(10)}
    held = lambda: sum(1 for p in range(PARTITIONS) for k in stack.processor.state.keys(p) if k.startswith("T:"))  # noqa: E731
    await stack.processor.sweep()
    assert held() == 10  # none has its list document yet: nothing to read them back from
    stack.now = T0 + timedelta(seconds=5)
    await stack.processor.flush_docs()
    await stack.processor.sweep()
    assert held() == 4  # the six changed longest ago are let go of
    gone = [s for s in range(10) if not stack.processor._local(partition_of(first[s], PARTITIONS), first[s])]  # noqa: SLF001
    assert gone == [0, 1, 2, 3, 4, 5]
    # their customers write again: the same tickets, read back whole, the conversation goes on
    again = {s: await stack.file(chat(f"m2-{s}", session=f"s{s}", visitor=f"v{s}", text="Any news?", at=stack.now))
             for s in (0, 5)}
    assert again == {0: first[0], 5: first[5]}
    ticket = await load_ticket(stack.store, first[0])
    assert [m.text for m in ticket.messages] == ["Where is my order?", "Any news?"] and ticket.status == Status.new
    assert stack.processor.recalled == 2
    # a redelivered first message of a ticket let go of and read back changes nothing (`seen` came back too)
    await stack.processor.flush_docs(everything=True)
    stack.now += timedelta(seconds=5)
    stack.processor.hold = 100
    stack.sent.clear()
    await run(stack.processor, stack.message(chat("m2-0", session="s0", visitor="v0", text="Any news?")))
    assert stack.sent.events(topics.TICKETS_EVENTS) == []
    # an agent's reply to one let go of reads it back and applies, once
    reply = ReplyToTicket(command_id="out_9", ticket_id=first[6], message_id="out_9", agent_id="a1", text="On its way",
                          request_id="r9")
    stack.processor.hold = 4
    await stack.processor.sweep()
    assert not stack.processor._local(partition_of(first[6], PARTITIONS), first[6])  # noqa: SLF001
    await run(stack.processor, stack.command(EventType.REPLY_TO_TICKET, reply, at=stack.now))
    assert stack.sent.events(topics.TICKETS_OUTCOMES)[-1]["data"]["status"] == 201
    assert (await load_ticket(stack.store, first[6])).status == Status.answered


async def test_tickets_let_go_of_stay_out_of_memory_after_a_restart_and_their_threads_stay():
    stack = Stack(hot=2, hold=3)
    first = {s: await stack.file(chat(f"m1-{s}", session=f"s{s}", visitor=f"v{s}")) for s in range(6)}
    stack.now = T0 + timedelta(seconds=5)
    await stack.processor.flush_docs()
    await stack.processor.sweep()
    again = restarted(stack)
    state = again.processor.state
    assert sorted(k for p in range(PARTITIONS) for k in state.keys(p) if k.startswith("T:")) == sorted(
        f"T:{first[s]}" for s in (3, 4, 5))
    assert sum(1 for p in range(PARTITIONS) for k in state.keys(p) if k.startswith("thread:")) == 6
    assert await again.file(chat("m2-1", session="s1", visitor="v1", text="Hello?", at=again.now)) == first[1]


async def test_a_postponed_ticket_is_held_while_its_clock_runs_and_a_finished_one_goes_with_its_thread():
    stack = Stack(hot=2, hold=1)
    postponed = await stack.file(chat("m1", session="s1", visitor="v1"))
    await run(stack.processor, stack.command(EventType.CHANGE_TICKET_STATUS, ChangeTicketStatus(
        command_id="c1", ticket_id=postponed, status="postponed", until=T0 + timedelta(hours=1), actor="a1")))
    spam = await stack.file(chat("m2", session="s2", visitor="v2"))
    await run(stack.processor, stack.command(EventType.CHANGE_TICKET_STATUS, ChangeTicketStatus(
        command_id="c2", ticket_id=spam, status="spam", actor="a1")))
    for s in range(3, 5):
        await stack.file(chat(f"m{s}", session=f"s{s}", visitor=f"v{s}"))
    stack.now = T0 + timedelta(seconds=15)
    await stack.processor.flush_docs()
    await stack.processor.sweep()
    assert stack.processor._local(partition_of(postponed, PARTITIONS), postponed)  # noqa: SLF001
    # a finished one goes with its conversation's key, as it would a day later
    assert not stack.processor._local(partition_of(spam, PARTITIONS), spam)  # noqa: SLF001
    assert (partition_of("chat:s2", PARTITIONS), "thread:chat:s2") not in stack.processor.state
    stack.now = T0 + timedelta(hours=1, seconds=1)
    assert await stack.processor.sweep() == 1
    assert (await load_ticket(stack.store, postponed)).status == Status.open
