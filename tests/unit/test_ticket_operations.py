"""Custom statuses, auto-close, SLA marks, merge and split, as rules without Kafka or MongoDB."""
from datetime import timedelta

import pytest

from services.tickets.domain import (
    CustomerInfo, CustomStatus, LifecycleError, Status, Ticket, query_terms, search_terms,
)
from shared.events import EventType
from tests.unit.test_ticket_lifecycle import T0, chat, new_ticket, types


def test_a_custom_status_is_set_as_its_category_and_a_change_within_it_is_still_an_event():
    ticket = new_ticket()
    types_ = types(ticket.change_status(Status.open, actor="a1", now=T0, substatus="waiting-on-warehouse"))
    assert types_ == [EventType.TICKET_STATUS_CHANGED]
    assert (ticket.status, ticket.substatus) == (Status.open, "waiting-on-warehouse")
    assert ticket.snapshot().status == "open" and ticket.snapshot().substatus == "waiting-on-warehouse"
    assert types(ticket.change_status(Status.open, actor="a1", now=T0, substatus=None)) == [
        EventType.TICKET_STATUS_CHANGED]
    assert ticket.substatus is None
    assert ticket.change_status(Status.open, actor="a1", now=T0) == []


def test_custom_statuses_cannot_shadow_built_in_ones_or_sit_outside_the_categories():
    with pytest.raises(LifecycleError):
        CustomStatus(name="open", category=Status.open, label="Open").check()
    with pytest.raises(LifecycleError):
        CustomStatus(name="binned", category=Status.deleted, label="Binned").check()
    CustomStatus(name="refund-pending", category=Status.resolved, label="Refund pending").check()


def test_a_resolved_ticket_closes_itself_after_the_quiet_period_unless_the_customer_wrote():
    ticket = new_ticket()
    ticket.change_status(Status.resolved, actor="a1", now=T0)
    assert ticket.close_if_quiet(T0 + timedelta(hours=71), after_s=72 * 3600) == []
    events = ticket.close_if_quiet(T0 + timedelta(hours=72), after_s=72 * 3600)
    assert types(events) == [EventType.TICKET_STATUS_CHANGED] and ticket.status == Status.closed
    assert ticket.timeline[-1].actor == "auto-close"

    reopened = new_ticket()
    reopened.change_status(Status.resolved, actor="a1", now=T0)
    reopened.receive(chat("m2", at=T0 + timedelta(hours=1)), now=T0 + timedelta(hours=1))
    assert reopened.close_if_quiet(T0 + timedelta(days=30), after_s=72 * 3600) == []


def test_sla_marks_go_on_the_timeline_once():
    ticket = new_ticket()
    later = T0 + timedelta(minutes=6)
    assert ticket.record_sla("first_response", "warning", at=T0, due_at=T0 + timedelta(minutes=5), now=later)
    assert ticket.record_sla("first_response", "breached", at=T0, due_at=T0, now=T0)  # heard of late
    assert not ticket.record_sla("first_response", "breached", at=T0, due_at=T0, now=later)
    times = [e.at for e in ticket.timeline]
    assert times == sorted(times), "the timeline stays in order even when SLA news arrives late"
    assert ticket.sla == {"first_response": "breached"}
    assert [e.type for e in ticket.timeline][-2:] == ["sla_warning", "sla_breached"]


def test_merging_takes_the_others_tags_and_history_by_reference_and_closes_the_other():
    survivor = new_ticket()
    other, _ = Ticket.open_from(chat("m9", "Also, the invoice is wrong", at=T0 + timedelta(minutes=5)),
                                ticket_id="TK-2", customer=CustomerInfo(id="CU-1"), now=T0 + timedelta(minutes=5))
    other.change_tags(add=["invoice"], remove=[], actor="a2", now=T0 + timedelta(minutes=6))
    now = T0 + timedelta(minutes=10)
    events = survivor.absorb(other, actor="a1", now=now)
    assert types(events) == [EventType.TICKET_MERGED] and events[0][1].moved_message_ids == ["m9"]
    assert survivor.merged_from == ["TK-2"] and survivor.tags == ["invoice"] and survivor.inbound_count == 2
    assert survivor.timeline[-1].type == "merged" and survivor.timeline[-1].details["ticket_id"] == "TK-2"
    assert survivor.absorb(other, actor="a1", now=now) == []  # a retried merge changes nothing
    closed = other.close_as_merged("TK-1", actor="a1", now=now)
    assert other.status == Status.closed and other.merged_into == "TK-1" and other.substatus == "merged"
    assert types(closed) == [EventType.TICKET_STATUS_CHANGED]
    assert other.close_as_merged("TK-1", actor="a1", now=now) == []
    with pytest.raises(LifecycleError):
        survivor.absorb(survivor, actor="a1", now=now)


def test_splitting_takes_a_customer_message_into_a_new_ticket():
    ticket = new_ticket()
    ticket.receive(chat("m2", "And a second question: gift wrap?", at=T0 + timedelta(minutes=1)), now=T0)
    message = ticket.messages[-1]
    events = ticket.split_off(message, "TK-NEW", actor="a1", now=T0 + timedelta(minutes=2))
    assert types(events) == [EventType.TICKET_SPLIT] and [m.message_id for m in ticket.messages] == ["m1"]
    new, created = Ticket.open_split(ticket, message, ticket_id="TK-NEW", actor="a1", now=T0 + timedelta(minutes=2))
    assert types(created) == [EventType.TICKET_CREATED] and new.split_from == "TK-1" and new.status == Status.new
    assert new.customer == ticket.customer and [m.text for m in new.messages] == ["And a second question: gift wrap?"]
    with pytest.raises(LifecycleError, match="only customer message"):
        ticket.split_off(ticket.messages[0], "TK-X", actor="a1", now=T0)


def test_text_search_finds_tickets_by_words_in_any_script():
    ticket = new_ticket()
    ticket.receive(chat("m2", "الطلب رقم 1042 لم يصل", at=T0), now=T0)
    terms = search_terms(ticket)
    assert {"where", "order", "1042", "الطلب"} <= set(terms)
    assert query_terms("Order  ORDER where?") == ["order", "where"]


def test_automation_can_route_to_a_team_and_answer_from_the_knowledge_base():
    ticket = new_ticket()
    events = ticket.automate(rules=["faq-returns"], priority="high", add_tags=["returns"], mark_spam=False,
                             now=T0, team="billing", reply="You can return items within 30 days.",
                             reply_id="out_kb1", reply_source="kb:returns")
    assert EventType.TICKET_REPLIED in types(events)
    assert ticket.team == "billing" and ticket.status == Status.answered and ticket.priority == "high"
    assert ticket.messages[-1].author == "automation" and ticket.messages[-1].text.startswith("You can return")
    assert ticket.timeline[0].type == "created"
    assert any(e.type == "automation" and e.details.get("answered_from") == "kb:returns" for e in ticket.timeline)
