"""Routing over in-memory stores: what its reader of ticket events asks, what the dispatcher decides
— knowledge-base answers, the agent who served the customer before, working hours, skill levels,
capacity never exceeded, the queue, escalations, a takeover. (The same paths on the real stack:
tests/e2e/test_routing*.py and the fault suite.)"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.routing.dispatch import Dispatcher
from services.routing.domain import AgentProfile, Presence
from services.routing.escalation import Escalation, EscalationActions, SlaKind
from services.routing.kb import Article
from services.routing.processor import RoutingProcessor
from services.routing.rules import Actions, Conditions, KbAnswer, Rule
from services.routing.store import RoutingStore
from shared import topics
from shared.events import (
    AgentUpdated, Channel, EventType, MessageSummary, SlaTarget, SlaTargetEvent, TicketAssigned, TicketCreated,
    TicketSnapshot, TicketStatusChanged,
)
from tests.unit.memory import Records, SentRecords, memory_storage, run

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday


class Routing:
    """The reader and the dispatcher of one routing process, wired through recorded records."""

    def __init__(self, hot: int | None = 20_000) -> None:
        self.now = NOW
        self.store = RoutingStore(memory_storage())
        self.sent = SentRecords()
        self.reader = RoutingProcessor(store=self.store, producer=self.sent, source="deskstream/routing")
        self.dispatcher = Dispatcher(store=self.store, producer=self.sent, bootstrap_servers="unused",
                                     source="deskstream/routing", offline_grace_s=300, hot=hot, clock=lambda: self.now)
        self.dispatcher.install({0}, ({0: ({}, {})}, []))
        self.records = Records()

    async def deliver(self) -> None:
        """Hand what the reader sent to the dispatcher, as Kafka would."""
        while requests := [r for r in self.sent.records if r.topic == topics.ROUTING_DISPATCH]:
            self.sent.records = [r for r in self.sent.records if r.topic != topics.ROUTING_DISPATCH]
            for request in requests:
                event = __import__("orjson").loads(request.value)
                await run(self.dispatcher, self.records.record(topics.ROUTING_DISPATCH, event["type"], event["data"],
                                                               key=request.key, id_=event["id"], at=self.now))

    async def ticket_event(self, type_: str, payload: Any, ticket_id: str) -> None:
        await run(self.reader, self.records.record(topics.TICKETS_EVENTS, type_, payload, key=ticket_id, at=self.now))
        await self.deliver()

    async def created(self, ticket: TicketSnapshot, text: str) -> None:
        message = MessageSummary(message_id=f"m-{ticket.id}", direction="inbound", channel=ticket.channel, text=text,
                                 at=self.now)
        await self.ticket_event(EventType.TICKET_CREATED, TicketCreated(ticket=ticket, message=message), ticket.id)

    async def resolved(self, ticket: TicketSnapshot) -> None:
        done = ticket.model_copy(update={"status": "resolved"})
        await self.ticket_event(EventType.TICKET_STATUS_CHANGED, TicketStatusChanged(
            ticket=done, from_status="new", to_status="resolved"), ticket.id)

    async def agent(self, agent_id: str, presence: Presence | str = Presence.online, **profile: Any) -> None:
        body = {"name": agent_id, "skills": [], "languages": ["en"], "channels": ["chat"], "capacity": 2, **profile}
        await self.store.upsert_agent(agent_id, AgentProfile.model_validate(body), self.now)
        await self.store.set_presence(agent_id, Presence(presence), self.now)
        await run(self.dispatcher, self.records.record(topics.ROUTING_DISPATCH, EventType.AGENT_UPDATED,
                                                       AgentUpdated(request_id=f"agent-{agent_id}-{self.now}",
                                                                    agent_id=agent_id), at=self.now))

    def commands(self, kind: str) -> list[dict]:
        return [e["data"] for e in self.sent.events(topics.TICKETS_COMMANDS) if e["type"].endswith(kind)]

    def assigned(self) -> list[tuple[str, str]]:
        return [(c["ticket_id"], c["agent_id"]) for c in self.commands("assign_ticket")]

    def load(self, agent_id: str) -> list[str]:
        return sorted(self.dispatcher.agents[agent_id].tickets)

    def queue(self) -> list[str]:
        return [t for t, _ in self.dispatcher._queue()]  # noqa: SLF001 - what waits, in order


@pytest.fixture
def routing() -> Routing:
    return Routing()


def ticket(tid: str, *, customer: str = "c1", language: str | None = "en", channel: str = "chat",
           priority: str = "normal", team: str | None = None) -> TicketSnapshot:
    return TicketSnapshot(id=tid, status="new", priority=priority, channel=Channel(channel), customer_id=customer,
                          language=language, created_at=NOW, version=1, team=team)


RETURNS = Article(title="Returning an item", language="en", keywords=["return", "refund"],
                  body="Print the return label from your account and drop the parcel at any post office.",
                  questions=["How do I return an item?", "Can I send something back?"])
RETURNS_AR = Article(title="إرجاع المنتجات", language="ar", body="يمكنك إرجاع أي منتج خلال ٣٠ يومًا.",
                     questions=["كيف يمكنني إرجاع المنتج؟"])
KB_RULE = Rule(name="Answer frequent questions", when=Conditions(channel=["chat"]),
               then=Actions(answer_from_kb=KbAnswer(min_score=0.6)))


# ---------------------------------------------------------------- knowledge-base answers

async def test_a_frequent_question_is_answered_with_the_matching_article(routing):
    await routing.store.put_article("returns-policy", RETURNS, NOW)
    await routing.store.put_rule("faq", KB_RULE)
    await routing.agent("ana")
    await routing.created(ticket("t1"), "Hi! How do I return an item?")
    [automation] = routing.commands("apply_automation")
    assert automation["reply"] == RETURNS.body and automation["reply_source"] == "kb:returns-policy"
    assert automation["rules"] == ["Answer frequent questions"]
    assert routing.assigned() == [("t1", "ana")]  # a person still follows up if the customer writes back


async def test_no_answer_when_nothing_scores_high_enough_or_only_another_language_has_one(routing):
    await routing.store.put_article("returns-ar", RETURNS_AR, NOW)
    await routing.store.put_article("returns-policy", RETURNS, NOW)
    await routing.store.put_rule("faq", KB_RULE)
    await routing.created(ticket("t1"), "My screen flickers after the update")
    await routing.created(ticket("t2", language="fr"), "How do I return an item?")
    await routing.created(ticket("t3", language="ar"), "كيف يمكنني إرجاع المنتج؟")
    replies = {c["ticket_id"]: c["reply_source"] for c in routing.commands("apply_automation")}
    assert replies == {"t1": None, "t2": None, "t3": "kb:returns-ar"}


async def test_spam_is_never_answered_nor_routed(routing):
    await routing.store.put_article("returns-policy", RETURNS, NOW)
    await routing.store.put_rule("faq", KB_RULE)
    await routing.store.put_rule("spam", Rule(name="spam", order=1, when=Conditions(text_any=["casino"]),
                                              then=Actions(mark_spam=True)))
    await routing.agent("ana")
    await routing.created(ticket("t1"), "casino bonus! how do I return an item?")
    [automation] = routing.commands("apply_automation")
    assert automation["mark_spam"] and automation["reply"] is None and routing.assigned() == []


# ---------------------------------------------------------------- who gets the ticket

async def test_capacity_is_never_exceeded_and_the_queue_drains_as_tickets_are_resolved(routing):
    await routing.agent("ana", capacity=2)
    for n in range(5):
        await routing.created(ticket(f"t{n}"), "hello")
    assert routing.assigned() == [("t0", "ana"), ("t1", "ana")] and routing.queue() == ["t2", "t3", "t4"]
    await routing.resolved(ticket("t0"))
    assert routing.assigned()[-1] == ("t2", "ana") and routing.load("ana") == ["t1", "t2"]
    await routing.resolved(ticket("t0"))  # the same release again changes nothing
    assert routing.load("ana") == ["t1", "t2"] and routing.queue() == ["t3", "t4"]


async def test_routings_own_assignment_coming_back_is_not_read_again_but_a_manual_one_counts(routing):
    await routing.agent("ana", capacity=1)
    await routing.agent("ben", capacity=1)
    await routing.created(ticket("t1"), "hello")
    [(_, first)] = routing.assigned()
    await routing.ticket_event(EventType.TICKET_ASSIGNED, TicketAssigned(
        ticket=ticket("t1"), agent_id=first, actor="routing"), "t1")
    assert routing.sent.events(topics.ROUTING_DISPATCH) == [] and routing.load(first) == ["t1"]
    other = "ben" if first == "ana" else "ana"
    await routing.created(ticket("t2"), "second")
    await routing.ticket_event(EventType.TICKET_ASSIGNED, TicketAssigned(
        ticket=ticket("t2"), agent_id=first, actor="lead-omar"), "t2")  # a person decided: past capacity
    assert routing.load(first) == ["t1", "t2"] and routing.load(other) == []


async def test_the_agent_who_served_the_customer_before_gets_their_next_ticket_when_free(routing):
    await routing.agent("ana", capacity=3)
    await routing.agent("ben", capacity=3)
    await routing.created(ticket("t0", customer="other"), "hello")
    await routing.created(ticket("t1", customer="c1"), "first")
    first_agent = routing.assigned()[-1][1]
    await routing.created(ticket("t2", customer="c1"), "me again")
    assert routing.assigned()[-1] == ("t2", first_agent)
    assert "served this customer before" in routing.commands("assign_ticket")[-1]["reason"]


async def test_an_online_agent_outside_their_working_hours_gets_no_tickets_until_their_shift(routing):
    routing.now = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # Monday 08:00 in Riyadh
    await routing.agent("layla", working_hours={"timezone": "Asia/Riyadh", "hours": {"mon": [["09:00", "17:00"]]}})
    await routing.created(ticket("t1"), "hello")
    assert routing.assigned() == [] and routing.queue() == ["t1"]
    routing.now += timedelta(hours=1)  # 09:00 in Riyadh
    assert await routing.dispatcher.tick() == 1
    assert routing.assigned() == [("t1", "layla")] and routing.queue() == []


async def test_a_ticket_needing_a_skill_level_waits_for_an_agent_who_has_it(routing):
    await routing.store.put_rule("legal", Rule(name="legal", when=Conditions(text_any=["lawyer"]),
                                               then=Actions(require_skills=["legal:4"])))
    await routing.agent("junior", skills=["legal:2"])
    await routing.created(ticket("t1"), "my lawyer will call")
    assert routing.assigned() == []
    await routing.agent("senior", skills=["legal:5", "general"])
    assert routing.assigned() == [("t1", "senior")]
    assert "legal (level 5)" in routing.commands("assign_ticket")[0]["reason"]


async def test_queued_tickets_go_urgent_first_and_one_nobody_can_take_does_not_block_the_rest(routing):
    await routing.agent("ana", capacity=1, languages=["en"])
    await routing.agent("sami", capacity=1, languages=["ar"])
    await routing.created(ticket("busy-en"), "first")
    await routing.created(ticket("busy-ar", language="ar"), "اول")
    await routing.created(ticket("ar-waiting", language="ar"), "ثاني")  # waits for sami
    await routing.created(ticket("normal"), "second")
    await routing.created(ticket("urgent", priority="urgent"), "third")
    assert len(routing.queue()) == 3
    await routing.resolved(ticket("busy-en"))
    assert routing.assigned()[-1] == ("urgent", "ana")
    await routing.resolved(ticket("urgent"))
    assert routing.assigned()[-1] == ("normal", "ana")  # the Arabic one was not offered to ana
    assert routing.queue() == ["ar-waiting"]


async def test_an_agent_offline_past_the_grace_period_has_their_tickets_moved(routing):
    await routing.agent("ana", capacity=2)
    await routing.created(ticket("t1"), "hello")
    await routing.agent("ben", capacity=2)
    await routing.agent("ana", Presence.offline, capacity=2)
    routing.now += timedelta(seconds=200)
    assert await routing.dispatcher.tick() == 0  # within the grace period
    routing.now += timedelta(seconds=200)
    assert await routing.dispatcher.tick() == 1
    assert routing.assigned()[-1] == ("t1", "ben") and routing.load("ana") == []


async def test_a_breach_escalation_raises_the_priority_and_moves_the_ticket_to_the_team_lead(routing):
    await routing.store.put_escalation("vip-breach", Escalation(
        name="to the lead", on=[SlaKind.breached], then=EscalationActions(priority="urgent", agent="lead")))
    await routing.agent("ana", capacity=5)
    await routing.agent("lead", capacity=1)
    await routing.created(ticket("t1"), "hello")
    assert routing.assigned() == [("t1", "ana")]
    breach = SlaTargetEvent(ticket_id="t1", target=SlaTarget.first_response, policy_id="default", at=NOW, due_at=NOW)
    await routing.ticket_event(EventType.SLA_BREACHED, breach, "t1")
    automation = routing.commands("apply_automation")[-1]
    assert automation["priority"] == "urgent" and automation["rules"] == ["to the lead (SLA first_response breached)"]
    assert routing.assigned()[-1] == ("t1", "lead") and routing.load("ana") == [] and routing.load("lead") == ["t1"]
    await routing.ticket_event(EventType.SLA_BREACHED, breach, "t1")  # redelivered: decided once
    assert len(routing.commands("apply_automation")) == 1 or routing.assigned().count(("t1", "lead")) == 1


async def test_a_dispatcher_taking_over_sends_the_commands_its_predecessor_may_not_have_sent(routing):
    await routing.agent("ana", capacity=2)
    routing.sent.fail, routing.sent.fail_topics = ConnectionError("the broker went away"), {topics.TICKETS_COMMANDS}
    with pytest.raises(ConnectionError):
        await routing.created(ticket("t1"), "hello")
    routing.sent.fail = None
    # the state (changelog) was written before the commands: a successor reads it back
    state = {0: (dict(routing.dispatcher.state.data[0]), dict(routing.dispatcher.state.applied.get(0, {})))}
    successor = Dispatcher(store=routing.store, producer=routing.sent, bootstrap_servers="unused",
                           source="deskstream/routing", clock=lambda: routing.now)
    successor.install({0}, (state, await routing.store.agent_docs()))
    await successor.resend_pending()
    assert routing.assigned() == [("t1", "ana")] and successor.agents["ana"].tickets == ["t1"]


async def test_beyond_the_hot_tickets_the_queue_is_held_encoded_and_still_served_in_order():
    routing = Routing(hot=2)
    await routing.agent("ana", capacity=3)
    for n in range(10):
        routing.now = NOW + timedelta(seconds=n)
        await routing.created(ticket(f"t{n}"), "Where is my parcel?")
    assert routing.load("ana") == ["t0", "t1", "t2"] and routing.queue() == [f"t{n}" for n in range(3, 10)]
    await routing.dispatcher.state.flush()
    assert routing.dispatcher.state.decoded() <= 2
    await routing.resolved(ticket("t1"))
    assert routing.load("ana") == ["t0", "t2", "t3"]  # the oldest waiting one, read back when its turn came
    assert routing.queue() == [f"t{n}" for n in range(4, 10)]
