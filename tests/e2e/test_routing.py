"""Routing over the real stack: automation rules, skills and teams, explained decisions,
capacity, and re-routing when an agent goes offline."""
from __future__ import annotations

import pytest

from tests.e2e.helpers import chat_message, file_chat, poll

pytestmark = pytest.mark.e2e


def put_agent(stack, agent_id, **profile):
    with stack.client("routing") as c:
        body = {"name": agent_id, "skills": [], "languages": ["ar", "en"], "channels": ["chat"], "capacity": 5, **profile}
        assert c.put(f"/v1/agents/{agent_id}", json=body).status_code == 200
        assert c.put(f"/v1/agents/{agent_id}/presence", json={"status": "online"}).status_code == 200


def presence(stack, agent_id, status):
    with stack.client("routing") as c:
        assert c.put(f"/v1/agents/{agent_id}/presence", json={"status": status}).status_code == 200


def assigned(stack, tid, timeout=30):
    with stack.client("tickets") as c:
        return poll(lambda: (lambda t: t if t.get("assignee") else None)(c.get(f"/v1/tickets/{tid}").json()), timeout=timeout)


def test_a_rule_sends_arabic_refund_requests_to_billing_with_high_priority(stack, agent):
    put_agent(stack, "amal-billing", skills=["refunds"], languages=["ar"], team="billing")
    rule = {"name": "Arabic refunds to billing", "order": 10,
            "when": {"language": ["ar"], "text_any": ["استرداد", "refund"]},
            "then": {"priority": "high", "add_tags": ["refund"], "require_skills": ["refunds"], "team": "billing"}}
    with stack.client("routing") as c:
        assert c.put("/v1/rules/ar-refunds", json=rule).status_code == 200
    try:
        _, tid = file_chat(stack, chat_message(text="أريد استرداد المبلغ للطلب رقم 10442 من فضلك"))
        ticket = assigned(stack, tid)
        assert ticket["assignee"] == "amal-billing"
        with stack.client("tickets") as c:
            ticket = poll(lambda: (lambda t: t if t["priority"] == "high" else None)(c.get(f"/v1/tickets/{tid}").json()))
        assert ticket and ticket["tags"] == ["refund"] and ticket["language"] == "ar"
        automation = next(e for e in ticket["timeline"] if e["type"] == "automation")
        assert automation["details"]["rules"] == ["Arabic refunds to billing"]
        why = next(e for e in ticket["timeline"] if e["type"] == "assigned")["details"]["reason"]
        assert "skills refunds" in why and "team billing" in why and "load 0/5" in why

        _, other = file_chat(stack, chat_message(text="Where is my parcel?"))  # no rule: anyone who fits
        assert "reason" in next(e for e in assigned(stack, other)["timeline"] if e["type"] == "assigned")["details"]
    finally:
        with stack.client("routing") as c:
            c.delete("/v1/rules/ar-refunds")
        presence(stack, "amal-billing", "offline")


def test_an_agent_who_goes_offline_has_their_tickets_rerouted_after_the_grace_period(stack, agent):
    put_agent(stack, "night-owl", capacity=3)  # empty: the least loaded, so the next ticket is theirs
    try:
        _, tid = file_chat(stack, chat_message(text="Can I change my delivery address?"))
        assert assigned(stack, tid)["assignee"] == "night-owl"
        presence(stack, "night-owl", "offline")
        with stack.client("tickets") as c:
            moved = poll(lambda: c.get(f"/v1/tickets/{tid}").json()["assignee"] == agent, timeout=30)
        assert moved, "the ticket stayed with an offline agent"
        with stack.client("routing") as c:
            owl = next(a for a in c.get("/v1/agents").json()["items"] if a["id"] == "night-owl")
        assert owl["load"] == 0
    finally:
        presence(stack, "night-owl", "offline")


def test_no_agent_exceeds_capacity_and_queued_tickets_are_assigned_as_capacity_frees(stack, agent):
    presence(stack, agent, "away")  # only the small team below takes new tickets
    try:
        for name in ("cap-a", "cap-b"):
            put_agent(stack, name, capacity=2)
        tickets = [file_chat(stack, chat_message(text=f"capacity {i}"))[1] for i in range(6)]
        with stack.client("routing") as c:
            def settled():
                agents = {a["id"]: a for a in c.get("/v1/agents").json()["items"]}
                return agents if agents["cap-a"]["load"] == 2 and agents["cap-b"]["load"] == 2 else None
            agents = poll(settled)
            assert agents, "the two agents were not filled to capacity"
            assert all(a["load"] <= a["capacity"] for a in agents.values() if a["presence"] == "online")
            assert c.get("/v1/agents").json()["queue_length"] >= 2
        with stack.client("tickets") as c:
            held = [t for t in tickets if c.get(f"/v1/tickets/{t}").json()["assignee"] in ("cap-a", "cap-b")]
            waiting = [t for t in tickets if t not in held]
            assert len(held) == 4 and len(waiting) == 2
            for t in held[:2]:  # two are resolved: their slots go to the two waiting ones
                assert c.post(f"/v1/tickets/{t}/status", json={"status": "resolved"}).status_code == 200
            assert poll(lambda: all(c.get(f"/v1/tickets/{t}").json()["assignee"] in ("cap-a", "cap-b")
                                    for t in waiting), timeout=30)
    finally:
        for name in ("cap-a", "cap-b"):
            presence(stack, name, "offline")
        presence(stack, agent, "online")
