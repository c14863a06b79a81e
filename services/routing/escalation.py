"""Escalations: what to do when an SLA target of a ticket is about to be missed or was missed. Pure.

An admin configures them as data (`PUT /v1/escalations/{id}`): on a warning and/or a breach
of some targets, for tickets that match, raise the priority (never lower it) and/or move the
ticket to a team or to one agent (a team lead). They run in ascending `order`; later ones
override the team and agent of earlier ones, the priority only ever goes up, and `stop`
ends the evaluation."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from services.routing.rules import Priority
from shared.events import SlaTarget, TicketSnapshot

PRIORITY_ORDER = {"low": 0, "normal": 1, "high": 2, "urgent": 3}


class SlaKind(StrEnum):
    warning = "warning"
    breached = "breached"


class EscalationMatch(BaseModel):
    targets: list[SlaTarget] | None = Field(None, description="any of these SLA targets (all when left out)")
    priority: list[str] | None = Field(None, description="tickets at any of these priorities")
    team: list[str] | None = Field(None, description="tickets of any of these teams")
    channel: list[str] | None = Field(None, description="any of these channels")
    tags_all: list[str] | None = Field(None, description="tickets with all of these tags")
    tier: list[str] | None = Field(None, description="customers of any of these tiers")


class EscalationActions(BaseModel):
    priority: Priority | None = Field(None, description="raise the priority to this (never lowers it)")
    team: str | None = Field(None, max_length=200, description="move the ticket to an agent of this team")
    agent: str | None = Field(
        None,
        max_length=200,
        description="move the ticket to this agent (a team lead) when they are on shift with "
        "room; otherwise to the team, if one is given",
    )

    @model_validator(mode="after")
    def _something_to_do(self) -> EscalationActions:
        if self.priority is None and self.team is None and self.agent is None:
            raise ValueError("an escalation needs at least one of priority, team, agent")
        return self


class Escalation(BaseModel):
    """`PUT /v1/escalations/{escalation_id}`."""

    name: str = Field(min_length=1, max_length=200)
    order: int = Field(1000, ge=-1_000_000, le=1_000_000)  # stored: it must fit a 64-bit integer
    enabled: bool = True
    on: list[SlaKind] = Field(min_length=1, description="warning, breached or both")
    when: EscalationMatch = Field(default_factory=EscalationMatch)
    then: EscalationActions
    stop: bool = False


class EscalationPlan(BaseModel):
    fired: list[str] = Field(default_factory=list)  # escalation names, in order
    priority: Priority | None = None  # only when higher than the ticket's
    team: str | None = None
    agent: str | None = None

    @property
    def moves(self) -> bool:
        return self.team is not None or self.agent is not None


def applies(when: EscalationMatch, target: SlaTarget, ticket: TicketSnapshot) -> bool:
    return (
        (when.targets is None or target in when.targets)
        and (when.priority is None or ticket.priority in when.priority)
        and (when.team is None or ticket.team in when.team)
        and (when.channel is None or ticket.channel.value in when.channel)
        and (when.tags_all is None or all(t in ticket.tags for t in when.tags_all))
        and (when.tier is None or ticket.customer_tier in when.tier)
    )


def plan_escalation(
    escalations: dict[str, Escalation], kind: SlaKind, target: SlaTarget, ticket: TicketSnapshot
) -> EscalationPlan:
    plan = EscalationPlan()
    level = PRIORITY_ORDER.get(ticket.priority, 1)
    for _, _, esc in sorted((e.order, eid, e) for eid, e in escalations.items()):
        if not esc.enabled or kind not in esc.on or not applies(esc.when, target, ticket):
            continue
        plan.fired.append(esc.name)
        act = esc.then
        if act.priority and PRIORITY_ORDER[act.priority.value] > level:
            plan.priority, level = act.priority, PRIORITY_ORDER[act.priority.value]
        if act.team or act.agent:
            plan.team, plan.agent = act.team, act.agent
        if esc.stop:
            break
    return plan
