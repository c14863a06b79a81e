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


def ticket_of(stack, tid):
    with stack.client("tickets") as c:
        return c.get(f"/v1/tickets/{tid}").json()


def test_a_frequent_question_gets_an_automatic_answer_from_the_knowledge_base(stack, agent):
    article = {"title": "Returning an item", "language": "en", "keywords": ["return", "returns", "send back"],
               "body": "You can return any item within 30 days: print the return label from your account and "
                       "drop the parcel at any post office.",
               "questions": ["How do I return an item?", "Can I send something back?"]}
    rule = {"name": "Answer frequent questions", "order": 5, "when": {"text_any": ["return", "send back"]},
            "then": {"answer_from_kb": {"min_score": 0.6}}}
    with stack.client("routing") as c:
        assert c.put("/v1/kb/articles/returns-policy", json=article).status_code == 200
        assert c.get("/v1/kb/search", params={"q": "how do I return an item?"}).json()["items"][0]["id"] == "returns-policy"
        assert c.put("/v1/rules/faq", json=rule).status_code == 200
    try:
        _, tid = file_chat(stack, chat_message(text="Hi! How do I return an item?"))
        with stack.client("tickets") as c:
            ticket = poll(lambda: (lambda t: t if t["status"] == "answered" else None)(c.get(f"/v1/tickets/{tid}").json()))
        assert ticket, "the frequent question was not answered automatically"
        [answer] = [m for m in ticket["messages"] if m["direction"] == "outbound"]
        assert answer["text"] == article["body"] and answer["author"] == "automation"
        automation = next(e for e in ticket["timeline"] if e["type"] == "automation")
        assert automation["details"]["answered_from"] == "kb:returns-policy"

        _, other = file_chat(stack, chat_message(text="I want to return to my question about invoices"))
        assert assigned(stack, other)  # the rule fired, but no article fits: no automatic answer
        other_ticket = ticket_of(stack, other)
        assert other_ticket["status"] != "answered"
        assert not [m for m in other_ticket["messages"] if m["direction"] == "outbound"]
    finally:
        with stack.client("routing") as c:
            c.delete("/v1/rules/faq")
            c.delete("/v1/kb/articles/returns-policy")


def arabic_refund_mail(msg_id: str) -> bytes:
    from email.message import EmailMessage

    mail = EmailMessage()
    mail["From"] = "Huda Al-Qahtani <huda.refund@example.com>"
    mail["To"] = "help@shop.example"
    mail["Subject"] = "طلب استرداد المبلغ للطلب 10442"
    mail["Message-ID"] = f"<{msg_id}>"
    mail["Date"] = "Mon, 23 Nov 2026 10:00:00 +0300"
    mail.set_content("السلام عليكم،\nوصلني المنتج تالفاً وأريد استرداد المبلغ كاملاً من فضلك.\nشكراً")
    return mail.as_bytes()


def test_a_rule_sends_an_arabic_refund_email_to_the_billing_team_with_high_priority(stack, agent):
    import uuid

    put_agent(stack, "hind-billing", skills=["refunds:3"], languages=["ar"], channels=["email"], team="billing")
    put_agent(stack, "sam-sales", skills=["refunds:5"], languages=["ar", "en"], channels=["email"], team="sales")
    rule = {"name": "Arabic refund emails to billing", "order": 10,
            "when": {"channel": ["email"], "language": ["ar"], "text_any": ["استرداد", "refund"]},
            "then": {"priority": "high", "add_tags": ["refund"], "require_skills": ["refunds:2"], "team": "billing"}}
    with stack.client("routing") as c:
        assert c.put("/v1/rules/ar-refund-email", json=rule).status_code == 200
    try:
        with stack.client("ingest") as ingest, stack.client("tickets") as tickets:
            r = ingest.post("/v1/inbound/email", content=arabic_refund_mail(f"{uuid.uuid4().hex}@mail.example.com"),
                            headers={"content-type": "message/rfc822"})
            assert r.status_code == 202, r.text
            filed = poll(lambda: (lambda x: x.json() if x.status_code == 200 else None)(
                tickets.get(f"/v1/messages/{r.json()['message_id']}")))
        tid = filed["ticket_id"]
        ticket = assigned(stack, tid)
        assert ticket["assignee"] == "hind-billing"  # sam knows refunds better, but is not in billing
        with stack.client("tickets") as c:
            ticket = poll(lambda: (lambda t: t if t["priority"] == "high" else None)(c.get(f"/v1/tickets/{tid}").json()))
        assert ticket, "the priority was never raised"
        assert ticket["channel"] == "email" and ticket["language"] == "ar"
        assert ticket["team"] == "billing" and ticket["tags"] == ["refund"]
        automation = next(e for e in ticket["timeline"] if e["type"] == "automation")
        assert automation["details"]["rules"] == ["Arabic refund emails to billing"]
        why = next(e for e in ticket["timeline"] if e["type"] == "assigned")["details"]["reason"]
        assert "refunds (level 3)" in why and "team billing" in why and "speaks ar" in why
    finally:
        with stack.client("routing") as c:
            c.delete("/v1/rules/ar-refund-email")
        presence(stack, "hind-billing", "offline")
        presence(stack, "sam-sales", "offline")


def test_a_first_response_breach_raises_the_priority_and_moves_the_ticket_to_the_team_lead(stack, agent):
    # the e2e stack's default SLA policy: first response due after 3 s, a warning 1 s before
    with stack.client("routing") as c:  # a new agent starts offline: the lead takes no ordinary tickets meanwhile
        body = {"name": "Rania", "skills": [], "languages": ["en"], "channels": ["chat"], "capacity": 5, "team": "leads"}
        assert c.put("/v1/agents/lead-rania", json=body).status_code == 200
    tag_rule = {"name": "Escalation drill", "order": 1, "when": {"text_any": ["escalation-drill"]},
                "then": {"add_tags": ["drill"]}}
    escalation = {"name": "First response missed", "on": ["breached"],
                  "when": {"targets": ["first_response"], "tags_all": ["drill"]},
                  "then": {"priority": "urgent", "agent": "lead-rania", "team": "leads"}}
    warning = {"name": "First response at risk", "order": 1, "on": ["warning"],
               "when": {"targets": ["first_response"], "tags_all": ["drill"]}, "then": {"priority": "high"}}
    with stack.client("routing") as c:
        assert c.put("/v1/rules/drill", json=tag_rule).status_code == 200
        assert c.put("/v1/escalations/fr-breach", json=escalation).status_code == 200
        assert c.put("/v1/escalations/fr-warning", json=warning).status_code == 200
    try:
        _, tid = file_chat(stack, chat_message(text="escalation-drill: nobody has answered me"))
        assert assigned(stack, tid)["assignee"] == agent
        presence(stack, "lead-rania", "online")
        with stack.client("tickets") as c:
            ticket = poll(lambda: (lambda t: t if t["assignee"] == "lead-rania" else None)(
                c.get(f"/v1/tickets/{tid}").json()), timeout=30)
        assert ticket, "the breached ticket never reached the team lead"
        assert ticket["priority"] == "urgent" and ticket["team"] == "leads"
        fired = [rule for e in ticket["timeline"] if e["type"] == "automation" for rule in e["details"]["rules"]]
        assert "First response at risk (SLA first_response warning)" in fired
        assert "First response missed (SLA first_response breached)" in fired
        moves = [e for e in ticket["timeline"] if e["type"] == "assigned" and e["details"]["agent_id"] == "lead-rania"]
        assert len(moves) == 1 and moves[0]["details"]["reason"].startswith("escalated: First response missed")
        with stack.client("routing") as c:
            held = {a["id"]: a["tickets"] for a in c.get("/v1/agents").json()["items"]}
        assert held["lead-rania"].count(tid) == 1 and tid not in held[agent]  # the slot moved with the ticket
    finally:
        with stack.client("routing") as c:
            c.delete("/v1/rules/drill")
            c.delete("/v1/escalations/fr-breach")
            c.delete("/v1/escalations/fr-warning")
        presence(stack, "lead-rania", "offline")
