"""Customer confirmation on the real stack: a resolved email ticket mails its customer a link; the page opens
and its form is answered in headless Chromium; solved closes the ticket, not solved reopens it for its agent;
the answer reaches /v1/summary and the dashboard; a made-up link is refused and records nothing."""
from __future__ import annotations

import email
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
import uuid
from email.policy import default

import httpx
import pytest

from tests.e2e.helpers import poll
from tests.e2e.test_email_conversation import customer_mail, post_mail

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LINK = re.compile(r"https?://\S+/v1/csat/[A-Za-z0-9._-]+")


# ---------------------------------------------------------------- a browser driven over its DevTools pipe


class Chromium:
    """Headless Chromium driven through the DevTools protocol on a pipe (`--remote-debugging-pipe`: fd 3
    in, fd 4 out), so no driver package is needed. The page under test runs no script of its own; the
    test clicks and submits as a user would."""

    def __init__(self) -> None:
        self.profile = tempfile.TemporaryDirectory()
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()

        def wire() -> None:  # in the child: the pipes become fds 3 and 4
            a = fcntl.fcntl(to_chrome, fcntl.F_DUPFD, 100)
            b = fcntl.fcntl(from_chrome, fcntl.F_DUPFD, 100)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
             f"--user-data-dir={self.profile.name}", "--remote-debugging-pipe", "about:blank"],
            preexec_fn=wire, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._id = 0
        self.session: str | None = None

    def call(self, method: str, params: dict | None = None, *, session: bool = True, timeout: float = 20) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    assert "error" not in reply, reply["error"]
                    return reply["result"]
            ready, _, _ = select.select([self._in], [], [], 0.5)
            if ready:
                chunk = os.read(self._in, 1 << 16)
                assert chunk, "chromium went away"
                self._buffer += chunk
        raise TimeoutError(f"chromium did not answer {method}")

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20):
        return poll(lambda: self.evaluate(expression), timeout=timeout, interval=0.2)

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False, timeout=5)
        except (TimeoutError, AssertionError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._out)
        os.close(self._in)
        self.profile.cleanup()


# ---------------------------------------------------------------- the stack, as a client sees it


def ticket(stack, ticket_id: str) -> dict:
    with stack.client("tickets") as tickets:
        r = tickets.get(f"/v1/tickets/{ticket_id}")
        assert r.status_code == 200, r.text
        return r.json()


def assigned_email_ticket(stack, subject: str) -> str:
    mail = customer_mail(subject, "Hello, can you help?", msg_id=f"{uuid.uuid4().hex}@mail.example.com")
    tid = post_mail(stack, mail)
    assert poll(lambda: ticket(stack, tid)["assignee"]), "routing never assigned the ticket"
    return tid


def resolve(stack, ticket_id: str) -> None:
    with stack.client("tickets") as tickets:
        r = tickets.post(f"/v1/tickets/{ticket_id}/status", json={"status": "resolved"})
        assert r.status_code == 200 and r.json()["status"] == "resolved", r.text


def mailed_link(mailbox, ticket_id: str) -> str | None:
    for raw in mailbox.mails:
        mail = email.message_from_bytes(raw, policy=default)
        if mail.get("X-Deskstream-Ticket") == ticket_id:
            found = LINK.search(mail.get_body(preferencelist=("plain",)).get_content())
            if found:
                return found.group(0)
    return None


def csat_summary(stack) -> dict:
    with stack.client("analytics") as analytics:
        return analytics.get("/v1/summary").json()["csat"]


def settled_csat(stack) -> dict:
    """The CSAT numbers once analytics has caught up (two reads a second apart agree): a stack reused
    across sessions replays earlier sessions' answers first."""
    last: dict | None = None
    for _ in range(30):
        now = csat_summary(stack)
        if now == last:
            return now
        last = now
        time.sleep(1.0)
    return last or {}


def carried_by(stack, agent_id: str) -> list[str]:
    """The tickets routing counts on the agent now."""
    with stack.client("routing") as routing:
        return next(a["tickets"] for a in routing.get("/v1/agents").json()["items"] if a["id"] == agent_id)


# ---------------------------------------------------------------- the tests


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: chromium)")
def test_a_resolved_email_ticket_asks_its_customer_and_the_form_in_a_browser_closes_it(stack, agent, mailbox):
    before = settled_csat(stack)
    tid = assigned_email_ticket(stack, "The blender arrived broken")
    resolve(stack, tid)
    link = poll(lambda: mailed_link(mailbox, tid), timeout=30)
    assert link, "no confirmation mail reached the SMTP server"
    shown = ticket(stack, tid)
    assert shown["csat"]["request_url"] == link and shown["csat"]["status"] == "requested"
    assert shown["status"] == "resolved"  # asking is not answering: the ticket stays resolved
    request = shown["messages"][-1]
    assert request["direction"] == "outbound" and link in request["text"]
    assert poll(lambda: (ticket(stack, tid)["messages"][-1].get("delivery") or {}).get("state") == "sent")

    browser = Chromium()
    try:
        browser.open(link)
        assert browser.wait_for("document.readyState === 'complete' && !!document.querySelector('form')")
        assert browser.evaluate("document.title") == "Was your request solved?"
        assert browser.evaluate("document.documentElement.lang") == "en"
        assert browser.evaluate("document.scripts.length") == 0  # a plain form: no script needed
        browser.evaluate("document.querySelector('input[name=solved][value=yes]').click();"
                         "document.querySelector('input[name=rating][value=\"5\"]').click();"
                         "document.querySelector('#comment').value = 'Quick and kind, thank you';"
                         "document.querySelector('button[type=submit]').click(); true")
        thanks = browser.wait_for("document.readyState === 'complete' && document.body"
                                  " && document.body.innerText.includes('Thank you') && document.body.innerText")
        assert thanks and "now closed" in thanks and "5 out of 5" in thanks
    finally:
        browser.close()

    closed = ticket(stack, tid)
    assert closed["status"] == "closed"
    assert closed["csat"]["status"] == "answered" and closed["csat"]["rating"] == 5
    assert closed["csat"]["comment"] == "Quick and kind, thank you" and closed["csat"]["solved"] is True
    closing = [e for e in closed["timeline"] if e["type"] == "status_changed" and e["details"]["to"] == "closed"]
    assert closing[-1]["details"]["reason"] == "customer confirmation"
    assert any(e["type"] == "csat_received" for e in closed["timeline"])

    # (each analytics process counts on its own and a request reaches either: at least ours is counted)
    after = poll(lambda: (lambda c: c if c["responses"] >= before["responses"] + 1
                          and c["satisfied"] >= before["satisfied"] + 1 else None)(csat_summary(stack)), timeout=60)
    assert after, "the rating never reached /v1/summary"
    assert after["by_channel"]["email"]["responses"] >= 1 and closed["csat"]["agent_id"] in after["by_agent"]

    def dashboard() -> tuple[str, str, str] | None:
        """The CSAT KPI as the dashboard shows it, and the table's rows (None until it shows the summary's)."""
        with tempfile.TemporaryDirectory() as profile:
            dom = subprocess.run(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--virtual-time-budget=4000", "--dump-dom",
                 f"{stack.urls['analytics']}/dashboard"], capture_output=True, text=True, timeout=90).stdout
        pct = re.search(r'id="kpi-csat"[^>]*>([^<]*)<', dom)
        hint = re.search(r'id="kpi-csat-hint"[^>]*>([^<]*)<', dom)
        c = csat_summary(stack)  # (the page and this read may reach different analytics processes: retried)
        if not (pct and hint) or pct.group(1) == "–" or float(pct.group(1).rstrip("%")) != c["satisfied_pct"] \
                or hint.group(1) != f"{c['responses']} rating{'' if c['responses'] == 1 else 's'}":
            return None
        return pct.group(1), hint.group(1), dom.split('id="csat-rows"', 1)[1].split("</tbody>", 1)[0]

    shown = poll(dashboard, timeout=60, interval=1.0)
    assert shown, "the dashboard never showed the summary's CSAT"
    assert ">email<" in shown[2] and f">{closed['csat']['agent_id']}<" in shown[2]


def test_not_solved_reopens_for_its_agent_and_a_second_answer_replaces_the_first(stack, agent, mailbox):
    tid = assigned_email_ticket(stack, "Wrong size delivered")
    holder = ticket(stack, tid)["assignee"]
    resolve(stack, tid)
    link = poll(lambda: ticket(stack, tid).get("csat") and ticket(stack, tid)["csat"]["request_url"])
    assert link
    assert poll(lambda: tid not in carried_by(stack, holder)), "routing did not release the resolved ticket"

    r = httpx.post(link, json={"solved": False, "rating": 2, "comment": "Still the wrong size"}, timeout=15)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "open" and r.json()["csat"]["rating"] == 2
    reopened = ticket(stack, tid)
    assert reopened["status"] == "open" and reopened["assignee"] == holder
    assert [e for e in reopened["timeline"] if e["type"] == "status_changed"][-1]["details"]["reason"] \
        == "customer: not solved"
    # routing hears the ticket needs an agent again: it is back with its agent, on their load
    assert poll(lambda: tid in carried_by(stack, holder)), "routing did not take the reopened ticket back"

    r = httpx.post(link, json={"solved": True, "rating": 4}, timeout=15)
    assert r.status_code == 200 and r.json()["status"] == "closed" and r.json()["csat"]["rating"] == 4
    final = ticket(stack, tid)
    assert final["status"] == "closed" and final["csat"]["rating"] == 4 and final["csat"]["solved"] is True
    assert sum(e["type"] == "csat_received" for e in final["timeline"]) == 2


def test_a_made_up_or_altered_link_is_refused_and_records_nothing(stack, agent, mailbox):
    tid = assigned_email_ticket(stack, "Refund question")
    resolve(stack, tid)
    link = poll(lambda: ticket(stack, tid).get("csat") and ticket(stack, tid)["csat"]["request_url"])
    assert link
    base, token = link.rsplit("/", 1)
    forged = f"{base}/{token[:-4]}{'AAAA' if not token.endswith('AAAA') else 'BBBB'}"
    other_ticket = f"{base}/TK-000000000000.{token.split('.', 1)[1]}"
    for bad in (forged, other_ticket, f"{base}/nonsense"):
        assert httpx.get(bad, timeout=10).status_code == 404
        r = httpx.post(bad, json={"solved": True, "rating": 5}, timeout=10)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    # bad answers to the real link: clear 4xx, nothing recorded
    for body in ({"solved": True, "rating": 9}, {"rating": 3}, {"solved": "maybe", "rating": 3}):
        r = httpx.post(link, json=body, timeout=10)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_answer"
    # the form, without saying whether it is solved: a browser gets the page again, another client our JSON error
    r = httpx.post(link, data={"rating": "3"}, headers={"Accept": "text/html"}, timeout=10)
    assert r.status_code == 422 and "text/html" in r.headers["content-type"] and "solved" in r.text
    r = httpx.post(link, data={"rating": "3"}, timeout=10)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_answer"
    assert httpx.get(forged, headers={"Accept": "text/html"}, timeout=10).text.startswith("<!doctype html>")
    unchanged = ticket(stack, tid)
    assert unchanged["status"] == "resolved" and unchanged["csat"]["status"] == "requested"
    assert not any(e["type"] == "csat_received" for e in unchanged["timeline"])


def test_an_admin_switches_confirmation_off_for_a_channel(stack, agent, mailbox):
    with stack.client("tickets") as tickets, stack.client("tickets", auth=False) as anonymous:
        assert anonymous.put("/v1/settings/csat", json={"channels": {"email": False}}).status_code == 401
        assert tickets.put("/v1/settings/csat", json={"delay_s": -1}).status_code == 422
        r = tickets.put("/v1/settings/csat", json={"channels": {"email": False}})
        assert r.status_code == 200 and r.json()["channels"]["email"] is False
    try:
        time.sleep(1.0)  # every tickets process hears of the change
        tid = assigned_email_ticket(stack, "Just a question")
        resolve(stack, tid)
        time.sleep(2.0)
        quiet = ticket(stack, tid)
        assert quiet["status"] == "resolved" and quiet["csat"] is None
        assert not any(m["direction"] == "outbound" for m in quiet["messages"])
    finally:
        with stack.client("tickets") as tickets:
            assert tickets.put("/v1/settings/csat", json={"channels": {"email": True}}).status_code == 200
