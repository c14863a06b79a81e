"""`make run`'s part for issue 18: customers answer the confirmation requests their resolved tickets sent
them (solved and rated, or not solved: reopened for the agent), as they would on the link's page, and the
CSAT numbers that follow."""

from __future__ import annotations

import time
from typing import Any

import httpx

# what the first few customers of resolved tickets answer: (solved, rating, comment)
ANSWERS = (
    (True, 5, "Fast and friendly, thank you!"),
    (True, 4, None),
    (False, 2, "The replacement has not arrived yet."),
    (True, 5, None),
)


def play(client: Any, tickets: dict[str, dict[str, Any]], timeout: float = 20.0) -> None:
    print("\n== Customers confirm resolutions (CSAT)")
    before = client.ok("GET", "analytics", "/v1/summary")["csat"]["responses"]
    answered = 0
    end = time.monotonic() + timeout
    for row in tickets.values():
        if answered == len(ANSWERS) or time.monotonic() > end:
            break
        ticket = client.ok("GET", "tickets", f"/v1/tickets/{row['ticket_id']}")
        csat = ticket.get("csat") or {}
        if ticket["status"] != "resolved" or csat.get("status") != "requested":
            continue
        solved, rating, comment = ANSWERS[answered]
        # the customer's browser posts the page's form; a script may post JSON to the same link
        r = httpx.post(csat["request_url"], json={"solved": solved, "rating": rating, "comment": comment}, timeout=15)
        if r.status_code != 200:
            print(f"   {ticket['id']}  answer refused: {r.status_code} {r.text[:120]}")
            continue
        answered += 1
        print(
            f"   {ticket['id']}  {ticket['channel']:<8} rated {rating}/5, "
            f"{'solved: closed' if solved else 'not solved: reopened'}  ({csat['request_url']})"
        )
    if not answered:
        print("   (no resolved ticket asked its customer yet)")
        return
    s = _wait(
        lambda: (lambda c: c if c["responses"] >= before + answered else None)(
            client.ok("GET", "analytics", "/v1/summary")["csat"]
        ),
        timeout=15,
    )
    if s:
        print(
            f"   CSAT: {s['satisfied_pct']}% satisfied of {s['responses']} ratings; by agent: "
            + ", ".join(f"{a} {n['satisfied_pct']}%" for a, n in s["by_agent"].items())
        )


def _wait(fn, timeout: float, interval: float = 0.5) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := fn():
            return value
        time.sleep(interval)
    return None
