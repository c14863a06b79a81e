"""The ticket lifecycle, as agents and customers see it, without Kafka or MongoDB."""
from datetime import UTC, datetime, timedelta

import pytest

from services.tickets.domain import (
    TRANSITIONS, CustomerInfo, LifecycleError, Status, ThreadingPolicy, Ticket, continues, ticket_id_for,
)
from shared.events import Channel, CustomerRef, EventType, Identity, MessageReceived

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def chat(message_id: str = "m1", text: str = "Where is my order?", at: datetime = T0) -> MessageReceived:
    return MessageReceived(
        message_id=message_id, channel=Channel.chat, external_id=message_id, thread_key="chat:s1",
        customer=CustomerRef(name="Bob", identities=[Identity(kind="chat", value="v1")]),
        text=text, sent_at=at, received_at=at)


def new_ticket() -> Ticket:
    ticket, _ = Ticket.open_from(chat(), ticket_id="TK-1", customer=CustomerInfo(id="CU-1"), now=T0)
    return ticket


def types(events) -> list[str]:
    return [t for t, _ in events]


def test_first_message_opens_a_new_ticket_with_a_created_event():
    ticket, events = Ticket.open_from(chat(), ticket_id="TK-1", customer=CustomerInfo(id="CU-1"), now=T0)
    assert ticket.status == Status.new
    assert types(events) == [EventType.TICKET_CREATED]
    assert [m.text for m in ticket.messages] == ["Where is my order?"]
    assert [e.type for e in ticket.timeline] == ["created", "message_received"]


def test_the_same_message_twice_is_filed_once():
    ticket = new_ticket()
    assert ticket.receive(chat("m1"), now=T0) == []
    assert len(ticket.messages) == 1


def test_agent_reply_makes_ticket_answered_and_customer_reply_reopens_it():
    ticket = new_ticket()
    events = ticket.reply(agent_id="a1", text="It ships today", message_id="o1", now=T0 + timedelta(minutes=5))
    assert ticket.status == Status.answered
    assert types(events) == [EventType.TICKET_REPLIED, EventType.TICKET_STATUS_CHANGED]
    events = ticket.receive(chat("m2", "Thanks, and the invoice?"), now=T0 + timedelta(minutes=9))
    assert ticket.status == Status.open
    assert types(events) == [EventType.TICKET_MESSAGE_ADDED, EventType.TICKET_STATUS_CHANGED]
    assert [m.direction for m in ticket.messages] == ["inbound", "outbound", "inbound"]


def test_customer_reply_reopens_resolved_ticket():
    ticket = new_ticket()
    ticket.change_status(Status.resolved, actor="a1", now=T0)
    ticket.receive(chat("m2", "It broke again"), now=T0 + timedelta(hours=1))
    assert ticket.status == Status.open


def test_resolved_is_not_closed_and_closed_accepts_no_more_messages():
    ticket = new_ticket()
    with pytest.raises(LifecycleError):
        ticket.change_status(Status.closed, actor="a1", now=T0)  # new → closed skips resolution
    ticket.change_status(Status.resolved, actor="a1", now=T0)
    assert ticket.accepts_messages()
    ticket.change_status(Status.closed, actor="a1", now=T0)
    assert not ticket.accepts_messages()


def test_postponing_needs_a_time_and_a_customer_message_wakes_the_ticket():
    ticket = new_ticket()
    with pytest.raises(LifecycleError):
        ticket.change_status(Status.postponed, actor="a1", now=T0)
    ticket.change_status(Status.postponed, actor="a1", now=T0, until=T0 + timedelta(days=1))
    assert ticket.postponed_until == T0 + timedelta(days=1)
    ticket.receive(chat("m2"), now=T0 + timedelta(hours=2))
    assert ticket.status == Status.open and ticket.postponed_until is None


def test_deleted_ticket_can_be_restored():
    ticket = new_ticket()
    ticket.change_status(Status.deleted, actor="admin", now=T0)
    ticket.change_status(Status.open, actor="admin", now=T0)
    assert ticket.status == Status.open


def test_spam_cannot_be_answered_or_assigned():
    ticket = new_ticket()
    ticket.change_status(Status.spam, actor="a1", now=T0)
    with pytest.raises(LifecycleError):
        ticket.reply(agent_id="a1", text="hi", message_id="o1", now=T0)
    with pytest.raises(LifecycleError):
        ticket.assign("a1", actor="routing", now=T0)


def test_assigning_the_same_agent_twice_changes_nothing():
    ticket = new_ticket()
    assert types(ticket.assign("a1", actor="routing", now=T0)) == [EventType.TICKET_ASSIGNED]
    assert ticket.assign("a1", actor="routing", now=T0) == []
    assert [e.type for e in ticket.timeline].count("assigned") == 1


def test_every_status_has_a_row_in_the_transition_table():
    assert set(TRANSITIONS) == set(Status)


def test_every_action_is_on_the_timeline_with_its_time():
    ticket = new_ticket()
    ticket.assign("a1", actor="routing", now=T0 + timedelta(seconds=1))
    ticket.reply(agent_id="a1", text="hello", message_id="o1", now=T0 + timedelta(seconds=2))
    ticket.change_status(Status.resolved, actor="a1", now=T0 + timedelta(seconds=3))
    kinds = [(e.type, e.at) for e in ticket.timeline]
    assert kinds[2:] == [("assigned", T0 + timedelta(seconds=1)), ("reply_sent", T0 + timedelta(seconds=2)),
                         ("status_changed", T0 + timedelta(seconds=2)), ("status_changed", T0 + timedelta(seconds=3))]


def test_ticket_id_is_deterministic_per_first_message():
    assert ticket_id_for("msg_a") == ticket_id_for("msg_a") != ticket_id_for("msg_b")
    assert ticket_id_for("msg_a").startswith("TK-")


def sms(message_id: str, at: datetime) -> MessageReceived:
    return MessageReceived(
        message_id=message_id, channel=Channel.sms, external_id=message_id, thread_key="sms:+966500000001",
        customer=CustomerRef(identities=[Identity(kind="phone", value="+966500000001")]),
        text="any update?", sent_at=at, received_at=at)


def test_a_quiet_sms_conversation_starts_a_new_ticket_after_the_window():
    policy = ThreadingPolicy(window_s=3600, reopen_window_s=7200)
    ticket, _ = Ticket.open_from(sms("s1", T0), ticket_id="TK-1", customer=CustomerInfo(id="CU-1"), now=T0)
    assert continues(ticket, sms("s2", T0), now=T0 + timedelta(minutes=59), policy=policy)
    assert not continues(ticket, sms("s3", T0), now=T0 + timedelta(minutes=61), policy=policy)
    assert continues(ticket, sms("s1", T0), now=T0 + timedelta(days=30), policy=policy)  # a redelivery


def test_a_chat_session_continues_until_the_ticket_is_closed():
    policy = ThreadingPolicy(window_s=60, reopen_window_s=60)
    ticket = new_ticket()
    assert continues(ticket, chat("m2"), now=T0 + timedelta(days=3), policy=policy)
    ticket.change_status(Status.resolved, actor="a1", now=T0)
    assert continues(ticket, chat("m3"), now=T0 + timedelta(seconds=30), policy=policy)
    assert not continues(ticket, chat("m4"), now=T0 + timedelta(hours=1), policy=policy)
    ticket.change_status(Status.closed, actor="a1", now=T0)
    assert not continues(ticket, chat("m5"), now=T0, policy=policy)


def test_a_message_filed_after_a_later_reply_still_reads_before_it_on_the_timeline():
    ticket = new_ticket()
    ticket.reply(agent_id="a1", text="On its way", message_id="out_1", now=T0 + timedelta(seconds=10))
    # received at ingest at +5 s, filed only after the reply was recorded
    ticket.receive(chat("m2", "Any news?", at=T0 + timedelta(seconds=5)), now=T0 + timedelta(seconds=11))
    times = [e.at for e in ticket.timeline]
    assert times == sorted(times)
    kinds = [e.type for e in ticket.timeline]
    assert kinds.index("message_received", 2) < kinds.index("reply_sent")
