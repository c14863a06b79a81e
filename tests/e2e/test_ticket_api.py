"""The agent API beyond the lifecycle, over the real stack: custom statuses, lists with
filters, search and sorting, bulk changes, merge and split, SLA marks on the timeline."""
from __future__ import annotations

import uuid

import pytest

from tests.e2e.helpers import chat_message, file_chat, poll

pytestmark = pytest.mark.e2e


def ids(items) -> list[str]:
    return [t["id"] for t in items]


def test_custom_statuses_filters_search_sorting_and_bulk_changes(stack, agent):
    word = "zq" + uuid.uuid4().hex[:8]  # a word only this test's tickets contain
    tickets_ = [file_chat(stack, chat_message(text=f"Parcel {word} number {i} is late"))[1] for i in range(3)]
    with stack.client("tickets") as api:
        r = api.put("/v1/statuses/waiting-on-courier", json={"category": "open", "label": "Waiting on courier"})
        assert r.status_code == 200, r.text
        assert api.put("/v1/statuses/open", json={"category": "open", "label": "x"}).status_code == 422
        assert any(c["name"] == "waiting-on-courier" for c in api.get("/v1/statuses").json()["custom"])

        r = api.post(f"/v1/tickets/{tickets_[0]}/status", json={"status": "waiting-on-courier"})
        assert r.status_code == 200 and r.json()["status"] == "open"
        assert api.post(f"/v1/tickets/{tickets_[0]}/status", json={"status": "no-such-status"}).status_code == 422

        found = api.get("/v1/tickets", params={"q": f"{word} LATE"}).json()["items"]
        assert sorted(ids(found)) == sorted(tickets_)
        assert ids(api.get("/v1/tickets", params={"q": word, "status": "waiting-on-courier"}).json()["items"]) == [
            tickets_[0]]

        r = api.post("/v1/tickets/bulk", json={"ticket_ids": [tickets_[1], tickets_[2], "TK-NOPE"],
                                               "priority": "urgent", "add_tags": [word]})
        assert r.status_code == 200
        assert r.json()["ok"] == 2 and r.json()["failed"] == 1
        assert [x["error"] for x in r.json()["results"] if not x["ok"]] == ["not_found"]
        assert sorted(ids(api.get("/v1/tickets", params={"tag": word, "priority": "urgent"}).json()["items"])) == sorted(
            tickets_[1:])

        # urgent first; pages of one follow the same order through the cursor
        order, cursor = [], None
        while True:
            page = api.get("/v1/tickets", params={"q": word, "sort": "priority", "limit": 1,
                                                  **({"cursor": cursor} if cursor else {})}).json()
            order += ids(page["items"])
            if not (cursor := page["next_cursor"]):
                break
        assert sorted(order[:2]) == sorted(tickets_[1:]) and order[2] == tickets_[0]
        assert api.get("/v1/tickets", params={"sort": "sideways"}).status_code == 422


def test_merge_two_tickets_and_split_a_message_off(stack, agent):
    session = uuid.uuid4().hex[:12]
    _, first = file_chat(stack, chat_message(session, "My order 77 has not arrived"))
    second_message = chat_message(uuid.uuid4().hex[:12], "Still waiting for order 77!")
    second_message["customer"]["email"] = f"{session}@example.com"  # the same customer, another chat
    _, second = file_chat(stack, second_message)
    assert first != second
    with stack.client("tickets") as api:
        r = api.post(f"/v1/tickets/{first}/merge", json={"ticket_id": second})
        assert r.status_code == 200, r.text
        merged = r.json()
        assert [m["text"] for m in merged["messages"]] == ["My order 77 has not arrived", "Still waiting for order 77!"]
        other = api.get(f"/v1/tickets/{second}").json()
        assert other["status"] == "closed" and other["merged_into"] == first
        assert api.post(f"/v1/tickets/{first}/merge", json={"ticket_id": second}).status_code == 200  # retry is fine
        assert api.post(f"/v1/tickets/{first}/merge", json={"ticket_id": first}).status_code == 409

        moved_id = merged["messages"][1]["message_id"]
        assert api.get(f"/v1/messages/{moved_id}").json()["ticket_id"] == first
        r = api.post(f"/v1/tickets/{first}/split", json={"message_id": moved_id})
        assert r.status_code == 201, r.text
        new_id = r.json()["ticket_id"]
        new = api.get(f"/v1/tickets/{new_id}").json()
        assert [m["text"] for m in new["messages"]] == ["Still waiting for order 77!"]
        assert new["split_from"] == first and new["status"] == "new"
        assert [m["message_id"] for m in api.get(f"/v1/tickets/{first}").json()["messages"]] != [moved_id]
        assert api.get(f"/v1/messages/{moved_id}").json()["ticket_id"] == new_id
        assert api.post(f"/v1/tickets/{first}/split", json={"message_id": "nope"}).status_code == 409


def test_sla_warnings_and_breaches_show_on_the_ticket_and_filter_the_list(stack, agent):
    # the e2e stack's default policy: first response due after 3 s, warning 1 s before
    _, ticket_id = file_chat(stack, chat_message(text="Nobody answers me"))
    with stack.client("tickets") as api:
        ticket = poll(lambda: (lambda t: t if t.get("sla", {}).get("first_response") == "breached" else None)(
            api.get(f"/v1/tickets/{ticket_id}").json()), timeout=30)
        assert ticket, "the breach never reached the ticket"
        kinds = [e["type"] for e in ticket["timeline"]]
        assert "sla_warning" in kinds and "sla_breached" in kinds
        assert kinds.index("sla_warning") < kinds.index("sla_breached")
        assert ticket_id in ids(api.get("/v1/tickets", params={"sla": "breached", "limit": 500}).json()["items"])
