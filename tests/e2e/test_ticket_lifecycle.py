"""The ticket lifecycle from the source documents, over the real stack: statuses,
timeline, postponement, spam, deletion, restoration, purging, concurrent agents, and
a subscriber that rebuilds every status from `tickets.events` alone."""
from __future__ import annotations

import concurrent.futures
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.helpers import chat_message, file_chat, poll, read_topic, run

pytestmark = pytest.mark.e2e


def ticket(stack, ticket_id):
    with stack.client("tickets") as c:
        return c.get(f"/v1/tickets/{ticket_id}").json()


def set_status(stack, ticket_id, status, **extra):
    with stack.client("tickets") as c:
        return c.post(f"/v1/tickets/{ticket_id}/status", json={"status": status, "actor": "lead-omar", **extra})


def customer_writes(stack, message, text):
    follow_up = {**message, "message_id": message["message_id"] + "-" + str(abs(hash(text)) % 10_000), "text": text}
    return file_chat(stack, follow_up)[1]


def test_the_documents_story_from_new_to_closed_with_a_timestamped_timeline(stack, agent):
    message = chat_message(text="My parcel arrived damaged.")
    _, tid = file_chat(stack, message)
    assert ticket(stack, tid)["status"] == "new"
    with stack.client("tickets") as c:
        assert c.post(f"/v1/tickets/{tid}/replies", json={"agent_id": agent, "text": "Sorry! Photo please?"}).json()["status"] == "answered"
    assert customer_writes(stack, message, "Here is the photo.") == tid
    assert poll(lambda: ticket(stack, tid)["status"] == "open")
    assert set_status(stack, tid, "resolved").json()["status"] == "resolved"
    assert customer_writes(stack, message, "The replacement is also broken!") == tid
    assert poll(lambda: ticket(stack, tid)["status"] == "open")
    assert set_status(stack, tid, "resolved").status_code == 200
    assert set_status(stack, tid, "closed").json()["status"] == "closed"

    final = ticket(stack, tid)
    steps = [(e["type"], e.get("details", {}).get("to")) for e in final["timeline"]
             if e["type"] in ("created", "reply_sent", "status_changed")]
    assert steps == [("created", None), ("reply_sent", None), ("status_changed", "answered"),
                     ("status_changed", "open"), ("status_changed", "resolved"), ("status_changed", "open"),
                     ("status_changed", "resolved"), ("status_changed", "closed")]
    times = [datetime.fromisoformat(e["at"]) for e in final["timeline"]]
    assert times == sorted(times) and all(e.get("actor") for e in final["timeline"])
    assert [e["actor"] for e in final["timeline"] if e["type"] == "status_changed"][-1] == "lead-omar"
    # resolved is not closed: a closed ticket takes no more messages, the next one starts afresh
    assert customer_writes(stack, message, "One more thing...") != tid


def test_a_postponed_ticket_wakes_up_when_its_time_comes(stack, agent):
    _, tid = file_chat(stack, chat_message(text="Call me back next week"))
    until = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    assert set_status(stack, tid, "postponed", until=until).json()["status"] == "postponed"
    assert ticket(stack, tid)["postponed_until"]
    assert poll(lambda: ticket(stack, tid)["status"] == "open", timeout=20)
    wake = [e for e in ticket(stack, tid)["timeline"] if e["type"] == "status_changed"][-1]
    assert wake["actor"] == "scheduler" and wake["details"] == {"from": "postponed", "to": "open"}


def test_spam_delete_restore_and_purge(stack, agent):
    _, spam = file_chat(stack, chat_message(text="WIN A FREE PHONE"))
    assert set_status(stack, spam, "spam").json()["status"] == "spam"
    with stack.client("tickets") as c:
        assert c.post(f"/v1/tickets/{spam}/replies", json={"agent_id": agent, "text": "hi"}).status_code == 409

    _, tid = file_chat(stack, chat_message(text="please delete my data"))
    with stack.client("tickets") as c:
        assert c.post(f"/v1/tickets/{tid}/purge").status_code == 409  # only deleted or spam tickets
    assert set_status(stack, tid, "deleted").json()["status"] == "deleted"
    assert set_status(stack, tid, "open").json()["status"] == "open"  # restored
    assert set_status(stack, tid, "deleted").status_code == 200
    with stack.client("tickets") as c:
        assert c.post(f"/v1/tickets/{tid}/purge").status_code == 202
        assert c.get(f"/v1/tickets/{tid}").status_code == 404
        assert c.post(f"/v1/tickets/{tid}/status", json={"status": "open"}).status_code == 404

    def seen(records):
        return {"deskstream.ticket.deleted", "deskstream.ticket.restored", "deskstream.ticket.purged"} <= {
            r.get("type") for r in records if r.get("subject") == tid}

    records = [r for r in run(read_topic(stack.kafka_bootstrap, "tickets.events", until=seen)) if r.get("subject") == tid]
    assert seen(records)
    purged = next(r for r in records if r["type"] == "deskstream.ticket.purged")
    assert purged["data"]["ticket_id"] == tid and "messages" not in purged["data"]


def test_two_agents_replying_at_the_same_moment_both_replies_are_kept(stack, agent):
    _, tid = file_chat(stack, chat_message(text="Is this in stock?"))

    def reply(n):
        with stack.client("tickets") as c:
            return c.post(f"/v1/tickets/{tid}/replies", json={"agent_id": f"agent-{n}", "text": f"answer {n}"}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(reply, range(8)))
    assert codes == [201] * 8
    outbound = [m["text"] for m in ticket(stack, tid)["messages"] if m["direction"] == "outbound"]
    assert sorted(outbound) == sorted(f"answer {n}" for n in range(8))


def test_priority_tags_notes_and_manual_assignment_are_events_and_timeline_entries(stack, agent):
    _, tid = file_chat(stack, chat_message(text="Wrong item delivered"))
    with stack.client("tickets") as c:
        assert c.put(f"/v1/tickets/{tid}/priority", json={"priority": "urgent"}).json()["priority"] == "urgent"
        assert c.post(f"/v1/tickets/{tid}/tags", json={"add": ["wrong-item", "vip"]}).json()["tags"] == ["wrong-item", "vip"]
        assert c.post(f"/v1/tickets/{tid}/tags", json={"remove": ["vip"]}).json()["tags"] == ["wrong-item"]
        assert c.post(f"/v1/tickets/{tid}/notes", json={"author": agent, "text": "Check warehouse B"}).status_code == 201
        assert c.put(f"/v1/tickets/{tid}/priority", json={"priority": "someday"}).status_code == 422
        listed = c.get("/v1/tickets", params={"tag": "wrong-item"}).json()["items"]
        assert tid in [t["id"] for t in listed]
    t = ticket(stack, tid)
    assert t["priority"] == "urgent" and t["notes"][0]["text"] == "Check warehouse B"
    assert {"priority_changed", "tags_changed", "note_added"} <= {e["type"] for e in t["timeline"]}
    assert all(m["direction"] == "inbound" for m in t["messages"])  # a note is never a message


def test_a_subscriber_reading_only_tickets_events_rebuilds_every_status(stack, agent):
    ids = []
    for status in ("resolved", "spam", "postponed", None):
        _, tid = file_chat(stack, chat_message(text=f"rebuild {status}"))
        if status:
            extra = {"until": (datetime.now(UTC) + timedelta(days=1)).isoformat()} if status == "postponed" else {}
            assert set_status(stack, tid, status, **extra).status_code == 200
        ids.append(tid)
    with stack.client("tickets") as c:
        truth = {tid: c.get(f"/v1/tickets/{tid}").json()["status"] for tid in ids}

    def rebuilt(records):
        state = {}
        for r in records:
            if r.get("subject") in truth and "ticket" in r.get("data", {}):
                state[r["subject"]] = r["data"]["ticket"]["status"]
        return state

    records = run(read_topic(stack.kafka_bootstrap, "tickets.events", until=lambda rs: rebuilt(rs) == truth))
    assert rebuilt(records) == truth
