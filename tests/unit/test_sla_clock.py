"""SLA policies and clocks without Kafka or MongoDB."""
from datetime import UTC, datetime, timedelta

from services.sla.domain import ClockState, Policy, PolicyMatch, choose_policy, first_response_clock
from shared.events import Channel, TicketSnapshot

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def ticket(channel=Channel.chat, priority="normal") -> TicketSnapshot:
    return TicketSnapshot(id="TK-1", status="new", priority=priority, channel=channel, customer_id="CU-1",
                          created_at=T0, version=1)


def test_lowest_order_whose_match_fits_wins():
    policies = {
        "urgent-chat": Policy(name="u", match=PolicyMatch(channel="chat", priority="urgent"), first_response_s=60, order=1),
        "chat": Policy(name="c", match=PolicyMatch(channel="chat"), first_response_s=600, order=10),
        "all": Policy(name="a", first_response_s=3600, order=100),
    }
    assert choose_policy(policies, ticket())[0] == "chat"
    assert choose_policy(policies, ticket(priority="urgent"))[0] == "urgent-chat"
    assert choose_policy(policies, ticket(channel=Channel.email))[0] == "all"
    assert choose_policy({"chat": policies["chat"]}, ticket(channel=Channel.email)) is None


def test_first_response_due_six_hours_after_creation_with_warning_before():
    clock = first_response_clock(ticket(), "default", Policy(name="d", first_response_s=6 * 3600, warn_before_s=1800))
    assert clock.due_at == T0 + timedelta(hours=6)
    assert clock.next_fire_at() == T0 + timedelta(hours=5, minutes=30)


def test_a_clock_warns_once_then_breaches_once():
    clock = first_response_clock(ticket(), "p", Policy(name="d", first_response_s=600, warn_before_s=60))
    assert clock.fire(T0 + timedelta(seconds=100)) is None
    assert clock.fire(T0 + timedelta(seconds=550)) == "warning"
    assert clock.fire(T0 + timedelta(seconds=560)) is None
    assert clock.next_fire_at() == clock.due_at
    assert clock.fire(T0 + timedelta(seconds=600)) == "breached"
    assert clock.state == ClockState.breached and clock.next_fire_at() is None
    assert clock.fire(T0 + timedelta(seconds=700)) is None


def test_an_answer_in_time_meets_the_target_and_stops_the_clock():
    clock = first_response_clock(ticket(), "p", Policy(name="d", first_response_s=600))
    assert clock.answer(T0 + timedelta(seconds=120)) == "met"
    assert clock.state == ClockState.met and clock.used(T0 + timedelta(hours=1), None) == 120
    assert clock.answer(T0 + timedelta(seconds=130)) is None
    assert clock.fire(T0 + timedelta(hours=1)) is None


def test_a_late_answer_is_a_breach_not_a_met_target():
    clock = first_response_clock(ticket(), "p", Policy(name="d", first_response_s=600))
    assert clock.answer(T0 + timedelta(seconds=601)) == "breached"
    assert clock.breached_at == clock.due_at


def test_a_clock_that_slept_through_its_deadline_breaches_without_a_late_warning():
    clock = first_response_clock(ticket(), "p", Policy(name="d", first_response_s=600, warn_before_s=60))
    assert clock.fire(T0 + timedelta(hours=2)) == "breached"


def test_the_clock_pauses_while_the_ticket_waits_on_the_customer_and_resumes_with_what_is_left():
    clock = first_response_clock(ticket(), "p", Policy(name="d", first_response_s=600, warn_before_s=60))
    assert clock.pause(T0 + timedelta(seconds=100), None)
    assert clock.state == ClockState.paused and clock.next_fire_at() is None
    assert clock.fire(T0 + timedelta(hours=5)) is None  # no breach while paused
    assert clock.resume(T0 + timedelta(hours=1), None)
    assert clock.due_at == T0 + timedelta(hours=1, seconds=500)
    assert clock.warn_at == T0 + timedelta(hours=1, seconds=440)
    assert clock.used(T0 + timedelta(hours=1, seconds=50), None) == 150


def test_pausing_twice_or_resuming_a_running_clock_changes_nothing():
    clock = first_response_clock(ticket(), "p", Policy(name="d", first_response_s=600))
    assert not clock.resume(T0, None)
    assert clock.pause(T0 + timedelta(seconds=10), None) and not clock.pause(T0 + timedelta(seconds=20), None)
    assert clock.used_s == 10
