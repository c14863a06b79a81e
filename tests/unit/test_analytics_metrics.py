"""What analytics shows Prometheus on /metrics: names, types, units and labels built from the
stored facts, so the numbers survive restarts and redeliveries; and `promtool check metrics`
has nothing to say about them (skipped where promtool is not installed)."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.test_analytics_readmodel import a_morning, new_service, play


async def exposition(events=None) -> bytes:
    service = new_service()
    await play(service, a_morning() if events is None else events)
    registry = CollectorRegistry(auto_describe=True)
    service.register_metrics(registry)
    return generate_latest(registry)


def families(text: bytes) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def samples(family, name: str | None = None) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if name is None or s.name == name}


async def test_tickets_created_is_a_counter_per_channel_including_quiet_channels():
    f = families(await exposition())["deskstream_tickets_created"]
    assert f.type == "counter"
    values = samples(f, "deskstream_tickets_created_total")
    assert values[(("channel", "chat"),)] == 1 and values[(("channel", "whatsapp"),)] == 1
    assert values[(("channel", "voice"),)] == 0  # present from the start, so rate() works at once


async def test_response_and_resolution_times_are_histograms_in_seconds_per_channel():
    fams = families(await exposition())
    first = fams["deskstream_first_response_seconds"]
    assert first.type == "histogram"
    buckets = samples(first, "deskstream_first_response_seconds_bucket")
    # the chat was answered after 5 minutes: in every bucket from le=300 up
    assert buckets[(("channel", "chat"), ("le", "60.0"))] == 0
    assert buckets[(("channel", "chat"), ("le", "300.0"))] == 1
    assert buckets[(("channel", "chat"), ("le", "+Inf"))] == 1
    assert samples(first, "deskstream_first_response_seconds_sum")[(("channel", "email"),)] == 7200
    assert samples(first, "deskstream_first_response_seconds_count")[(("channel", "email"),)] == 1
    resolution = fams["deskstream_resolution_seconds"]
    assert samples(resolution, "deskstream_resolution_seconds_count") == {(("channel", "chat"),): 1}


def business(text: bytes) -> list[str]:
    """The exposition without analytics' own process numbers (event lag, refresh timing)."""
    return [line for line in text.decode().splitlines() if "deskstream_analytics_" not in line]


async def test_redelivered_events_do_not_inflate_counters_or_histograms():
    events = a_morning()
    assert business(await exposition(events)) == business(await exposition([e for e in events for _ in range(3)]))


async def test_backlog_sla_and_agents_have_bounded_labels():
    fams = families(await exposition())
    backlog = fams["deskstream_backlog_tickets"]
    assert backlog.type == "gauge"
    assert samples(backlog) == {(("status", "new"),): 1, (("status", "open"),): 0, (("status", "answered"),): 1,
                                (("status", "postponed"),): 0}
    assert samples(fams["deskstream_backlog_tickets_by_age"])[(("age", "1-4h"),)] == 2
    assert samples(fams["deskstream_backlog_oldest_age_seconds"]) == {(): 170 * 60}
    sla = fams["deskstream_sla_events"]
    assert sla.type == "counter"
    sla_values = samples(sla, "deskstream_sla_events_total")
    assert sla_values[(("kind", "breached"), ("target", "first_response"))] == 1
    assert sla_values[(("kind", "met"), ("target", "resolution"))] == 0
    outcomes = samples(fams["deskstream_sla_outcomes"], "deskstream_sla_outcomes_total")
    assert outcomes[(("outcome", "breached"), ("policy", "standard"), ("target", "first_response"))] == 1
    resolutions = samples(fams["deskstream_agent_resolutions"], "deskstream_agent_resolutions_total")
    assert resolutions == {(("agent", "layla"),): 2, (("agent", "omar"),): 0}
    assert samples(fams["deskstream_agent_reopens"], "deskstream_agent_reopens_total")[(("agent", "layla"),)] == 1
    assert samples(fams["deskstream_agent_open_tickets"]) == {(("agent", "omar"),): 1}
    assert samples(fams["deskstream_recurring_tag_tickets"])[(("tag", "orders"),)] == 3


async def test_no_ticket_or_customer_id_appears_in_any_label():
    text = (await exposition()).decode()
    label_values = {v for f in text_string_to_metric_families(text) for s in f.samples for v in s.labels.values()}
    assert not {v for v in label_values if v.startswith(("TK-", "CU-"))}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian: prometheus)")
async def test_promtool_finds_nothing_to_complain_about():
    checked = subprocess.run(["promtool", "check", "metrics"], input=await exposition(), capture_output=True,
                             timeout=30)
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
    assert not (checked.stdout + checked.stderr).strip(), (checked.stdout + checked.stderr).decode()
