"""SLA over the real stack (the e2e stack's default policy: first response within 3 s,
warning 1 s before)."""
from __future__ import annotations

import time

import pytest

from tests.e2e.helpers import chat_message, file_chat, read_topic, run

pytestmark = pytest.mark.e2e


def sla_records(stack, until, timeout=40):
    return run(read_topic(stack.kafka_bootstrap, "sla.events", until=until, timeout=timeout))


def test_an_unanswered_ticket_gets_one_warning_then_one_breach(stack, agent):
    _, tid = file_chat(stack, chat_message(text="Hello? Anyone?"))

    def both(records):
        kinds = [r["type"] for r in records if r.get("subject") == tid]
        return "deskstream.sla.warning" in kinds and "deskstream.sla.breached" in kinds

    records = sla_records(stack, both)
    time.sleep(2)  # anything doubled would have arrived by now
    records = sla_records(stack, lambda rs: False, timeout=3)
    mine = [r for r in records if r.get("subject") == tid]
    assert sorted(r["type"] for r in mine) == ["deskstream.sla.breached", "deskstream.sla.warning"]
    warning = next(r for r in mine if r["type"] == "deskstream.sla.warning")
    breach = next(r for r in mine if r["type"] == "deskstream.sla.breached")
    assert warning["data"]["target"] == breach["data"]["target"] == "first_response"
    assert warning["time"] <= breach["time"]


def test_breaches_missed_while_sla_was_down_are_emitted_once_after_restart(stack, agent):
    stack.kill("sla")
    try:
        tickets = [file_chat(stack, chat_message(text=f"while sla sleeps {i}"))[1] for i in range(3)]
        time.sleep(8)  # every deadline (3 s) passes while nothing watches the clocks
    finally:
        stack.restart("sla")

    def all_breached(records):
        return {r["subject"] for r in records if r.get("type") == "deskstream.sla.breached"} >= set(tickets)

    assert all_breached(sla_records(stack, all_breached))
    time.sleep(2)
    records = sla_records(stack, lambda rs: False, timeout=3)
    for tid in tickets:
        assert [r["type"] for r in records if r.get("subject") == tid].count("deskstream.sla.breached") == 1
