"""Escalation on SLA warnings and breaches: what is decided (pure) and what is sent, once."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.routing.escalation import Escalation, EscalationActions, SlaKind, plan_escalation
from services.routing.rules import Actions, Conditions, Rule
from shared.events import SlaTarget, SlaTargetEvent
from tests.unit.test_routing_service import NOW, online, routing, ticket  # noqa: F401 (routing is a fixture)

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


def sla_event(tid: str, kind: SlaKind = SlaKind.breached) -> tuple[str, SlaKind, SlaTargetEvent]:
    return (f"sla-{tid}-first_response-{kind.value}", kind,
            SlaTargetEvent(ticket_id=tid, target=SlaTarget.first_response, policy_id="default", at=NOW, due_at=NOW))


async def test_a_breached_ticket_goes_to_the_team_lead_with_urgent_priority_once_under_redelivery(routing):
    service, store, sent, _ = routing
    await online(service, "ana", capacity=5)
    await service.ticket_created(ticket("t1"), "hello")
    assert sent.of("assign_ticket")[-1]["agent_id"] == "ana"
    await online(service, "lead-1", capacity=5, team="leads")
    await online(service, "lead-2", capacity=5, team="leads")
    await store.put_escalation("lead", Escalation(name="To the lead", on=[SlaKind.breached],
                                                  then={"priority": "urgent", "agent": "lead-2", "team": "leads"}))
    before = len(sent)
    for _ in range(3):  # the SLA event delivered three times
        await service.sla_event(*sla_event("t1"))
    commands = sent[before:]
    assert {c["id"] for c in commands} == {commands[0]["id"], commands[1]["id"]}  # the same two commands, resent
    automation = next(c["data"] for c in commands if c["type"].endswith("apply_automation"))
    assert automation["priority"] == "urgent" and automation["team"] == "leads"
    assert automation["rules"] == ["To the lead (SLA first_response breached)"]
    moves = [c["data"] for c in commands if c["type"].endswith("assign_ticket")]
    assert {m["agent_id"] for m in moves} == {"lead-2"} and "escalated" in moves[0]["reason"]
    loads = {a.id: a.load for a in await store.all_agents()}
    assert loads == {"ana": 0, "lead-1": 0, "lead-2": 1}  # the slot moved, once
    assert await store.holder_of("t1") == "lead-2"


async def test_a_redelivered_escalation_keeps_the_first_choice_even_when_loads_changed(routing):
    service, store, sent, _ = routing
    await online(service, "ana", capacity=5)
    await service.ticket_created(ticket("t1"), "hello")
    await online(service, "lead-1", capacity=5, team="leads")
    await online(service, "lead-2", capacity=5, team="leads")
    await store.put_escalation("team", Escalation(name="To leads", on=[SlaKind.breached], then={"team": "leads"}))
    await service.sla_event(*sla_event("t1"))
    first = sent.of("assign_ticket")[-1]["agent_id"]
    await service.ticket_created(ticket("t2"), "x")  # loads shift before the redelivery arrives
    await service.sla_event(*sla_event("t1"))
    assert sent.of("assign_ticket")[-1]["agent_id"] == first and await store.holder_of("t1") == first
    assert sum(a.load for a in await store.all_agents()) == 2


async def test_a_queued_ticket_escalated_to_a_team_with_room_is_assigned(routing):
    service, store, sent, _ = routing
    await store.put_rule("billing", Rule(name="billing", when=Conditions(text_any=["invoice"]),
                                         then=Actions(team="billing")))
    await online(service, "bill", capacity=1, team="billing")
    await online(service, "lead-1", capacity=5, team="leads", channels=["email"])  # not on chat: cannot take t1
    await online(service, "lead-2", capacity=5, team="leads")
    await service.ticket_created(ticket("t0"), "invoice one")
    await service.ticket_created(ticket("t1"), "invoice two")  # billing is full: it waits
    assert await store.queue_length() == 1 and len(sent.of("assign_ticket")) == 1
    await store.put_escalation("team", Escalation(name="To leads", on=[SlaKind.warning], then={"team": "leads"}))
    await service.sla_event(*sla_event("t1", SlaKind.warning))
    assert sent.of("assign_ticket")[-1] == {**sent.of("assign_ticket")[-1], "ticket_id": "t1", "agent_id": "lead-2"}
    assert await store.queue_length() == 0


async def test_no_escalation_configured_sends_nothing(routing):
    service, _, sent, _ = routing
    await service.ticket_created(ticket("t1"), "hello")
    before = len(sent)
    await service.sla_event(*sla_event("t1"))
    assert len(sent) == before
