"""Escalation on SLA warnings and breaches: what is decided (pure) and what is sent, once."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.routing.escalation import Escalation, EscalationActions, SlaKind, plan_escalation
from services.routing.rules import Actions, Conditions, Rule
from shared.events import EventType, SlaTarget, SlaTargetEvent
from tests.unit.memory import run
from tests.unit.test_routing_dispatch import NOW, Routing, ticket

BREACH_TO_LEADS = Escalation(name="First response breached", on=[SlaKind.breached],
                             when={"targets": ["first_response"]}, then={"priority": "urgent", "team": "leads"})
WARN_HIGH = Escalation(name="Warned", order=1, on=[SlaKind.warning], then={"priority": "high"})


def test_a_breach_raises_the_priority_and_moves_to_the_team_a_warning_only_raises():
    escalations = {"b": BREACH_TO_LEADS, "w": WARN_HIGH}
    breach = plan_escalation(escalations, SlaKind.breached, SlaTarget.first_response, ticket("t1"))
    assert breach.fired == ["First response breached"] and breach.priority == "urgent" and breach.team == "leads"
    warning = plan_escalation(escalations, SlaKind.warning, SlaTarget.first_response, ticket("t1"))
    assert warning.fired == ["Warned"] and warning.priority == "high" and not warning.moves
    resolution = plan_escalation(escalations, SlaKind.breached, SlaTarget.resolution, ticket("t1"))
    assert resolution.fired == []


def test_the_priority_is_never_lowered():
    plan = plan_escalation({"w": WARN_HIGH}, SlaKind.warning, SlaTarget.first_response,
                           ticket("t1", priority="urgent"))
    assert plan.fired == ["Warned"] and plan.priority is None


def test_an_escalation_must_do_something():
    with pytest.raises(ValidationError):
        EscalationActions()
    with pytest.raises(ValidationError):
        Escalation(name="x", on=[], then={"priority": "high"})


async def breach(routing: Routing, tid: str, kind: SlaKind = SlaKind.breached) -> None:
    event = SlaTargetEvent(ticket_id=tid, target=SlaTarget.first_response, policy_id="default", at=NOW, due_at=NOW)
    await run(routing.reader, routing.records.record(
        "sla.events", EventType.SLA_BREACHED if kind == SlaKind.breached else EventType.SLA_WARNING, event,
        key=tid, id_=f"sla-{tid}-first_response-{kind.value}", at=routing.now))
    await routing.deliver()


@pytest.fixture
def routing() -> Routing:
    return Routing()


async def test_a_breached_ticket_goes_to_the_team_lead_with_urgent_priority_once_under_redelivery(routing):
    await routing.agent("ana", capacity=5)
    await routing.created(ticket("t1"), "hello")
    await routing.agent("lead-1", capacity=5, team="leads", presence="offline")
    await routing.agent("lead-2", capacity=5, team="leads")
    await routing.store.put_escalation("lead", Escalation(
        name="To the lead", on=[SlaKind.breached], then={"priority": "urgent", "team": "leads", "agent": "lead-1"}))
    await breach(routing, "t1")
    await breach(routing, "t1")  # redelivered
    automation = routing.commands("apply_automation")
    assert len(automation) == 1 and automation[0]["priority"] == "urgent" and automation[0]["team"] == "leads"
    assert automation[0]["rules"] == ["To the lead (SLA first_response breached)"]
    moves = [c for c in routing.commands("assign_ticket") if "escalated" in (c["reason"] or "")]
    assert [m["agent_id"] for m in moves] == ["lead-2"]  # the lead is offline: their team takes it, once
    assert {a: routing.load(a) for a in ("ana", "lead-1", "lead-2")} == {"ana": [], "lead-1": [], "lead-2": ["t1"]}


async def test_a_queued_ticket_escalated_to_a_team_with_room_is_assigned(routing):
    await routing.store.put_rule("billing", Rule(name="billing", when=Conditions(text_any=["invoice"]),
                                                 then=Actions(team="billing")))
    await routing.agent("bill", capacity=1, team="billing")
    await routing.agent("lead-1", capacity=5, team="leads", channels=["email"])  # not on chat: cannot take t1
    await routing.agent("lead-2", capacity=5, team="leads")
    await routing.created(ticket("t0"), "invoice one")
    await routing.created(ticket("t1"), "invoice two")  # billing is full: it waits
    assert routing.queue() == ["t1"] and len(routing.assigned()) == 1
    await routing.store.put_escalation("team", Escalation(name="To leads", on=[SlaKind.warning], then={"team": "leads"}))
    await breach(routing, "t1", SlaKind.warning)
    assert routing.assigned()[-1] == ("t1", "lead-2") and routing.queue() == []


async def test_no_escalation_configured_sends_nothing(routing):
    await routing.agent("ana")
    await routing.created(ticket("t1"), "hello")
    before = len(routing.sent.records)
    await breach(routing, "t1")
    assert len(routing.sent.records) == before
