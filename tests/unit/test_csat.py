"""Customer confirmation: the signed links, the rules of asking and answering, the tickets processor's part
and the answer's parsing — without Kafka or a database (on the real stack: tests/e2e/test_csat.py)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from services.tickets.csat.api import InvalidAnswer, answer_of
from services.tickets.csat.rules import CsatSettings, CsatSettingsChange, Surveys
from services.tickets.domain import CsatRefused, CsatStatus, CustomerInfo, Direction, Status, Ticket
from services.tickets.views import load_ticket
from shared import topics
from shared.events import ChangeTicketStatus, Channel, EventType, RecordCsatAnswer
from tests.unit.memory import run
from tests.unit.test_tickets_processor import T0, Stack, chat, restarted

KEY = b"k" * 32


def resolved_ticket(channel: Channel = Channel.email) -> Ticket:
    t = Ticket(id="TK-0123456789AB", channel=channel, customer=CustomerInfo(id="CU-1"), thread_key="email:x",
               created_at=T0, updated_at=T0, assignee="agent-a", team="billing")
    t.change_status(Status.resolved, actor="agent-a", now=T0)
    t.drain()
    return t


# ---------------------------------------------------------------- links


def test_a_link_reads_back_to_its_ticket_and_survey_and_a_forged_one_does_not():
    surveys = Surveys(KEY, "https://help.shop.example/")
    url = surveys.url("TK-0123456789AB", "abcdef0123456789")
    assert url.startswith("https://help.shop.example/v1/csat/TK-0123456789AB.abcdef0123456789.")
    token = url.rsplit("/", 1)[1]
    assert surveys.read(token) == ("TK-0123456789AB", "abcdef0123456789")
    other_ticket = token.replace("TK-0123456789AB", "TK-0123456789AC")
    assert surveys.read(other_ticket) is None  # the signature covers the ticket
    assert surveys.read(token[:-2] + ("AA" if not token.endswith("AA") else "BB")) is None
    assert Surveys(b"another key" * 3, "http://x").read(token) is None
    assert surveys.read("not-a-token") is None and surveys.read("x" * 5000) is None


def test_settings_switch_channels_one_by_one_and_keep_what_a_change_leaves_out():
    settings = CsatSettings()
    assert all(settings.applies(c) for c in Channel) and settings.delay_s == 0
    changed = settings.merged(CsatSettingsChange(channels={Channel.sms: False}, delay_s=60))
    assert not changed.applies(Channel.sms) and changed.applies(Channel.email) and changed.delay_s == 60
    again = changed.merged(CsatSettingsChange(delay_s=0))
    assert not again.applies(Channel.sms) and again.delay_s == 0


# ---------------------------------------------------------------- the rules


def test_resolving_asks_the_customer_once_per_resolution_with_an_outbound_message():
    t = resolved_ticket()
    surveys = Surveys(KEY, "http://127.0.0.1:8002")
    events = surveys.ask(t, T0)
    assert [e for e, _ in events] == [EventType.TICKET_CSAT_REQUESTED]
    assert t.status == Status.resolved  # asking does not make it "answered"
    [message] = t.messages
    assert message.direction == Direction.outbound and t.csat.request_url in message.text
    assert t.csat.status == CsatStatus.requested and t.csat.agent_id == "agent-a" and t.csat.team == "billing"
    assert surveys.ask(t, T0 + timedelta(seconds=1)) == []  # the same resolution: not asked twice


def test_solved_closes_at_once_by_customer_confirmation():
    t = resolved_ticket()
    Surveys(KEY, "http://x").ask(t, T0)
    t.drain()
    events = t.answer_csat(survey_id=t.csat.survey_id, solved=True, rating=5, comment="Thanks!", now=T0)
    assert [e for e, _ in events] == [EventType.TICKET_CSAT_RECEIVED, EventType.TICKET_STATUS_CHANGED]
    assert t.status == Status.closed and t.csat.status == CsatStatus.answered and t.csat.rating == 5
    closing = next(e for e in t.timeline if e.type == "status_changed")
    assert closing.details["to"] == "closed" and closing.details["reason"] == "customer confirmation"


def test_not_solved_reopens_and_a_second_answer_within_seven_days_takes_it_back():
    t = resolved_ticket()
    Surveys(KEY, "http://x").ask(t, T0)
    sid = t.csat.survey_id
    events = t.answer_csat(survey_id=sid, solved=False, rating=2, comment=None, now=T0)
    assert [e for e, _ in events] == [EventType.TICKET_CSAT_RECEIVED, EventType.TICKET_REOPENED]
    assert t.status == Status.open
    later = t.answer_csat(survey_id=sid, solved=True, rating=4, comment="fixed now", now=T0 + timedelta(days=1))
    assert later[0][1].updated is True and t.status == Status.closed and t.csat.rating == 4
    back = t.answer_csat(survey_id=sid, solved=False, rating=1, comment=None, now=T0 + timedelta(days=2))
    assert t.status == Status.open and back[-1][0] == EventType.TICKET_REOPENED
    with pytest.raises(CsatRefused) as late:
        t.answer_csat(survey_id=sid, solved=True, rating=5, comment=None, now=T0 + timedelta(days=10))
    assert late.value.status == 410 and t.csat.rating == 1


def test_a_link_of_another_resolution_is_refused():
    t = resolved_ticket()
    with pytest.raises(CsatRefused) as none_asked:
        t.answer_csat(survey_id="0" * 16, solved=True, rating=5, comment=None, now=T0)
    assert none_asked.value.status == 404
    Surveys(KEY, "http://x").ask(t, T0)
    with pytest.raises(CsatRefused) as other:
        t.answer_csat(survey_id="0" * 16, solved=True, rating=5, comment=None, now=T0)
    assert other.value.status == 404 and t.status == Status.resolved and t.csat.status == CsatStatus.requested


# ---------------------------------------------------------------- in the processor


def asking_stack(**settings) -> Stack:
    stack = Stack()
    stack.processor.surveys = Surveys(KEY, "http://127.0.0.1:8002")
    stack.processor.csat_settings = CsatSettings(**settings)
    return stack


async def resolve(stack: Stack, ticket_id: str, command_id: str = "c1") -> None:
    await run(stack.processor, stack.command(EventType.CHANGE_TICKET_STATUS, ChangeTicketStatus(
        command_id=command_id, ticket_id=ticket_id, status="resolved", actor="a1", request_id="r-" + command_id)))


async def answer(stack: Stack, ticket_id: str, survey_id: str, *, solved: bool, rating: int, n: int = 1) -> dict:
    await run(stack.processor, stack.command(EventType.RECORD_CSAT_ANSWER, RecordCsatAnswer(
        command_id=f"a{n}", ticket_id=ticket_id, survey_id=survey_id, solved=solved, rating=rating,
        request_id=f"ra{n}")))
    return stack.sent.events(topics.TICKETS_OUTCOMES)[-1]["data"]


async def test_a_resolution_in_the_processor_asks_and_the_answer_closes_through_a_command():
    stack = asking_stack()
    ticket_id = await stack.file(chat("m1"))
    await resolve(stack, ticket_id)
    assert EventType.TICKET_CSAT_REQUESTED in stack.sent.types(topics.TICKETS_EVENTS)
    ticket = await load_ticket(stack.store, ticket_id)
    assert ticket.csat.status == CsatStatus.requested and ticket.messages[-1].author == "csat"
    outcome = await answer(stack, ticket_id, ticket.csat.survey_id, solved=True, rating=4)
    assert outcome["status"] == 200 and outcome["result"]["status"] == "closed"
    assert outcome["result"]["csat"]["rating"] == 4
    assert EventType.TICKET_CSAT_RECEIVED in stack.sent.types(topics.TICKETS_EVENTS)
    assert (await load_ticket(stack.store, ticket_id)).status == Status.closed


async def test_an_answer_naming_another_survey_is_refused_with_404_and_changes_nothing():
    stack = asking_stack()
    ticket_id = await stack.file(chat("m1"))
    await resolve(stack, ticket_id)
    stack.sent.clear()
    outcome = await answer(stack, ticket_id, "f" * 16, solved=True, rating=5)
    assert outcome["status"] == 404 and stack.sent.events(topics.TICKETS_EVENTS) == []
    assert (await load_ticket(stack.store, ticket_id)).status == Status.resolved


async def test_with_a_delay_the_sweep_asks_later_and_a_switched_off_channel_is_never_asked():
    stack = asking_stack(delay_s=600)
    ticket_id = await stack.file(chat("m1"))
    await resolve(stack, ticket_id)
    assert EventType.TICKET_CSAT_REQUESTED not in stack.sent.types(topics.TICKETS_EVENTS)
    stack.now = T0 + timedelta(seconds=599)
    await stack.processor.sweep()
    assert EventType.TICKET_CSAT_REQUESTED not in stack.sent.types(topics.TICKETS_EVENTS)
    stack.now = T0 + timedelta(seconds=601)
    assert await stack.processor.sweep() == 1
    assert EventType.TICKET_CSAT_REQUESTED in stack.sent.types(topics.TICKETS_EVENTS)

    off = asking_stack(channels={Channel.chat: False})
    other = await off.file(chat("m2"))
    await resolve(off, other)
    assert EventType.TICKET_CSAT_REQUESTED not in off.sent.types(topics.TICKETS_EVENTS)
    assert (await load_ticket(off.store, other)).csat is None


async def test_a_delayed_request_survives_a_restart_of_the_process_owning_the_ticket():
    stack = asking_stack(delay_s=600)
    ticket_id = await stack.file(chat("m1"))
    await resolve(stack, ticket_id)
    stack = restarted(stack)  # the new owner learns when the request is due from the changelog alone
    stack.processor.surveys = Surveys(KEY, "http://127.0.0.1:8002")
    stack.processor.csat_settings = CsatSettings(delay_s=600)
    stack.now = T0 + timedelta(seconds=601)
    assert await stack.processor.sweep() == 1
    assert EventType.TICKET_CSAT_REQUESTED in stack.sent.types(topics.TICKETS_EVENTS)
    assert (await load_ticket(stack.store, ticket_id)).csat.status == CsatStatus.requested


# ---------------------------------------------------------------- the answer as sent


def test_the_answer_comes_as_json_or_as_the_pages_form_and_anything_else_is_refused_clearly():
    assert answer_of("application/json", b'{"solved": true, "rating": 5}').solved is True
    form = answer_of("application/x-www-form-urlencoded", b"solved=no&rating=2&comment=still+broken")
    assert (form.solved, form.rating, form.comment) == (False, 2, "still broken")
    for content_type, body, says in (
        ("application/json", b'{"solved": true, "rating": 6}', "rating"),
        ("application/json", b"[1]", "JSON object"),
        ("application/json", b"{", "not valid"),
        ("application/x-www-form-urlencoded", b"rating=3", "solved"),
        ("application/x-www-form-urlencoded", b"solved=yes", "rating"),
        ("text/plain", b"5", "JSON or"),
    ):
        with pytest.raises(InvalidAnswer) as refused:
            answer_of(content_type, body)
        assert says in str(refused.value)

