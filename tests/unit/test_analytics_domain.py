"""What each ticket and SLA event contributes to the analytics read model, and the arithmetic
on the stored facts (percentiles, histogram buckets, time buckets, ages). Pure: no I/O.

`Story` builds one ticket's events as `tickets.events` carries them; the other analytics
tests use it too."""
from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from services.analytics.domain import (
    FIRST_RESPONSE_BUCKETS, age_label, bucket_bound, bucket_starts, contribution, cumulative, distribution,
    floor_time, percentile,
)
from shared.events import (
    CloudEvent, Direction, EventType, MessageSummary, SlaTargetEvent, TicketAssigned, TicketCreated,
    TicketMessageAdded, TicketPurged, TicketReplied, TicketSnapshot, TicketStatusChanged, TicketTagsChanged,
    make_event,
)

T0 = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


class Story:
    """One ticket's life, event by event, with the snapshot and versions the tickets service sends."""

    def __init__(self, ticket_id: str = "TK-1", *, channel: str = "chat", at: datetime = T0,
                 tags: tuple[str, ...] = ()) -> None:
        self.id = ticket_id
        self.snap = TicketSnapshot(id=ticket_id, status="new", priority="normal", channel=channel,
                                   customer_id="CU-1", tags=list(tags), created_at=at, version=1)
        self.events: list[CloudEvent] = []
        self._n = 0
        self._emit(EventType.TICKET_CREATED, TicketCreated(ticket=self.snap, message=self._message("inbound", at)), at)

    def _message(self, direction: str, at: datetime, author: str | None = None) -> MessageSummary:
        self._n += 1
        return MessageSummary(message_id=f"{self.id}-m{self._n}", direction=Direction(direction),
                              channel=self.snap.channel, text="text", at=at, author=author)

    def _change(self, **fields) -> TicketSnapshot:
        self.snap = self.snap.model_copy(update={**fields, "version": self.snap.version + 1})
        return self.snap

    def _emit(self, type_: str, payload, at: datetime) -> CloudEvent:
        event = make_event(type_, payload, source="deskstream/tickets", subject=self.id, time=at)
        self.events.append(event)
        return event

    def assign(self, agent: str, at: datetime) -> Story:
        previous = self.snap.assignee
        self._emit(EventType.TICKET_ASSIGNED, TicketAssigned(ticket=self._change(assignee=agent), agent_id=agent,
                                                             previous_agent_id=previous), at)
        return self

    def reply(self, agent: str, at: datetime) -> Story:
        before = self.snap.status
        snap = self._change(status="answered")
        self._emit(EventType.TICKET_REPLIED, TicketReplied(ticket=snap, message=self._message("outbound", at, agent),
                                                           agent_id=agent), at)
        if before != "answered":
            self._emit(EventType.TICKET_STATUS_CHANGED,
                       TicketStatusChanged(ticket=snap, from_status=before, to_status="answered"), at)
        return self

    def status(self, to: str, at: datetime, type_: str = EventType.TICKET_STATUS_CHANGED) -> Story:
        before = self.snap.status
        self._emit(type_, TicketStatusChanged(ticket=self._change(status=to), from_status=before, to_status=to,
                                              actor="agent"), at)
        return self

    def customer_writes(self, at: datetime) -> Story:
        """A customer message; on a resolved ticket it reopens it (two events, one version)."""
        before = self.snap.status
        to = "open" if before in ("answered", "resolved", "postponed") else before
        snap = self._change()
        self._emit(EventType.TICKET_MESSAGE_ADDED, TicketMessageAdded(ticket=snap, message=self._message("inbound", at)),
                   at)
        if to != before:
            self.snap = snap = snap.model_copy(update={"status": to})
            type_ = EventType.TICKET_REOPENED if before == "resolved" else EventType.TICKET_STATUS_CHANGED
            self._emit(type_, TicketStatusChanged(ticket=snap, from_status=before, to_status=to), at)
        return self

    def tag(self, *tags: str, at: datetime) -> Story:
        self._emit(EventType.TICKET_TAGS_CHANGED, TicketTagsChanged(
            ticket=self._change(tags=[*self.snap.tags, *tags]), added=list(tags)), at)
        return self

    def purge(self, at: datetime) -> Story:
        self._emit(EventType.TICKET_PURGED, TicketPurged(ticket_id=self.id, customer_id="CU-1", at=at), at)
        return self


def sla(kind: str, ticket_id: str, target: str = "first_response", *, policy: str = "standard",
        at: datetime = T0, cycle: str = "") -> CloudEvent:
    type_ = {"warning": EventType.SLA_WARNING, "breached": EventType.SLA_BREACHED, "met": EventType.SLA_MET}[kind]
    payload = SlaTargetEvent(ticket_id=ticket_id, target=target, policy_id=policy, cycle=cycle, due_at=at, at=at)
    suffix = f"-{cycle}" if cycle else ""
    return make_event(type_, payload, source="deskstream/sla", subject=ticket_id,
                      id_=f"sla-{ticket_id}-{target}{suffix}-{kind}", time=at)


def facts(event: CloudEvent) -> list[tuple[str, str, str | None]]:
    return [(f["_id"], f["kind"], f["agent"]) for f in contribution(event).facts]


# ---------------------------------------------------------------- contributions

def test_a_created_ticket_contributes_its_state_keyed_by_version():
    created = Story("TK-1", channel="email", tags=("orders",)).events[0]
    c = contribution(created)
    assert c.ticket_id == "TK-1" and c.facts == [] and c.sla is None
    assert c.state["_id"] == "TK-1:1:0" and (c.state["version"], c.state["rank"]) == (1, 0)
    assert c.state["channel"] == "email" and c.state["status"] == "new" and c.state["tags"] == ["orders"]
    assert "customer_id" not in c.state  # nothing personal in the read model


def test_a_reopening_outranks_the_message_that_caused_it_within_one_version():
    story = Story().status("resolved", T0 + minutes(5)).customer_writes(T0 + minutes(9))
    message, reopened = (contribution(e).state for e in story.events[-2:])
    assert message["version"] == reopened["version"] == 3
    assert (message["status"], reopened["status"]) == ("resolved", "open")
    assert (reopened["version"], reopened["rank"]) > (message["version"], message["rank"])


def test_the_first_reply_is_the_first_response_and_later_replies_share_its_key():
    story = Story().assign("layla", T0 + minutes(1)).reply("layla", T0 + minutes(12))
    story.customer_writes(T0 + minutes(20)).reply("omar", T0 + minutes(30))
    replies = [e for e in story.events if e.type == EventType.TICKET_REPLIED]
    first, second = (contribution(e).facts[0] for e in replies)
    assert first["_id"] == second["_id"] == "TK-1:first_response"  # the second insert is a duplicate
    assert first["seconds"] == 12 * 60 and first["agent"] == "layla"


def test_assignments_count_each_agent_once_per_ticket():
    story = Story().assign("layla", T0).assign("omar", T0 + minutes(5)).assign("layla", T0 + minutes(9))
    ids = [f for e in story.events for f in facts(e)]
    assert ids == [("TK-1:assigned:layla", "assigned", "layla"), ("TK-1:assigned:omar", "assigned", "omar"),
                   ("TK-1:assigned:layla", "assigned", "layla")]


def test_a_resolution_credits_the_assignee_and_measures_from_creation():
    story = Story().assign("sara", T0).reply("sara", T0 + minutes(5)).status("resolved", T0 + minutes(90))
    resolved = contribution(story.events[-1])
    assert [(f["_id"], f["kind"], f["agent"]) for f in resolved.facts] == [
        ("TK-1:resolved:4", "resolved", "sara"), ("TK-1:resolution", "resolution", "sara")]
    assert resolved.facts[1]["seconds"] == 90 * 60


def test_a_reopening_is_credited_to_the_agent_who_resolved():
    story = Story().assign("sara", T0).status("resolved", T0 + minutes(30)).customer_writes(T0 + minutes(50))
    assert facts(story.events[-1]) == [("TK-1:reopened:4", "reopened", "sara")]
    # the message that caused it carries the same version but is no reopening
    assert story.events[-2].type == EventType.TICKET_MESSAGE_ADDED and facts(story.events[-2]) == []


def test_sla_facts_are_keyed_per_target_cycle_and_kind():
    a = contribution(sla("breached", "TK-1", "next_response", cycle="m2")).sla
    b = contribution(sla("breached", "TK-1", "next_response", cycle="m4")).sla
    assert a["_id"] == "TK-1:next_response:m2:breached" and b["_id"] != a["_id"]
    assert (a["target"], a["kind"], a["policy_id"]) == ("next_response", "breached", "standard")


def test_a_purge_is_a_final_state_with_nothing_personal():
    c = contribution(Story().purge(T0 + minutes(3)).events[-1])
    assert c.ticket_id == "TK-1" and c.facts == []
    assert c.state["status"] == "purged" and c.state["tags"] == [] and c.state["assignee"] is None
    assert c.state["version"] > 10**15  # outranks any version the ticket had


def test_events_analytics_does_not_know_contribute_nothing():
    odd = CloudEvent(id="x", source="elsewhere", type="com.example.something", time=T0, data={"a": 1})
    c = contribution(odd)
    assert c.ticket_id is None and c.state is None and c.facts == []


def test_tags_only_change_the_state():
    story = Story().tag("refund", at=T0 + minutes(2))
    c = contribution(story.events[-1])
    assert c.facts == [] and c.state["tags"] == ["refund"] and c.state["version"] == 2


# ---------------------------------------------------------------- arithmetic

def test_percentiles_interpolate_between_closest_ranks():
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 50) == 25.0
    assert percentile(values, 0) == 10.0 and percentile(values, 100) == 40.0
    assert percentile([7.0], 90) == 7.0 and percentile([], 50) is None
    assert distribution([60.0, 120.0, 180.0]) == {"count": 3, "mean_s": 120.0, "p50_s": 120.0, "p90_s": 168.0,
                                                  "p99_s": 178.8}


def test_a_duration_falls_under_the_smallest_bound_it_does_not_exceed():
    assert bucket_bound(0, FIRST_RESPONSE_BUCKETS) == 60
    assert bucket_bound(60, FIRST_RESPONSE_BUCKETS) == 60  # Prometheus buckets are "less than or equal"
    assert bucket_bound(61, FIRST_RESPONSE_BUCKETS) == 300
    assert bucket_bound(10**9, FIRST_RESPONSE_BUCKETS) is None


def test_histogram_buckets_are_cumulative_and_end_with_inf():
    assert cumulative({60: 2, 900: 1, None: 1}, (60, 300, 900)) == [
        (60.0, 2), (300.0, 2), (900.0, 3), (math.inf, 4)]
    # a stored bound no longer in the list lands in the next larger one
    assert cumulative({120: 1}, (60, 300)) == [(60.0, 0), (300.0, 1), (math.inf, 1)]


def test_time_buckets_are_utc_hours_and_days():
    riyadh_evening = datetime.fromisoformat("2026-03-02T23:30:00+03:00")
    assert floor_time(riyadh_evening, "hour") == datetime(2026, 3, 2, 20, tzinfo=UTC)
    assert floor_time(riyadh_evening, "day") == datetime(2026, 3, 2, tzinfo=UTC)
    starts = bucket_starts(datetime(2026, 3, 2, 9, 40, tzinfo=UTC), datetime(2026, 3, 2, 12, tzinfo=UTC), "hour")
    assert [s.hour for s in starts] == [9, 10, 11]


@pytest.mark.parametrize("seconds, label", [(0, "0-1h"), (3599, "0-1h"), (3600, "1-4h"), (5 * 3600, "4-24h"),
                                            (2 * 86400, "1-3d"), (6 * 86400, "3-7d"), (30 * 86400, "7d+")])
def test_backlog_ages_fall_in_named_buckets(seconds, label):
    assert age_label(seconds) == label
