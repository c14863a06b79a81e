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


def test_policies_match_on_the_customers_tier_and_the_tickets_team_once_they_are_known():
    policies = {
        "vip-billing": Policy(name="vb", match=PolicyMatch(tier="vip", team="billing"), first_response_s=300, order=1),
        "billing": Policy(name="b", match=PolicyMatch(team="billing"), first_response_s=1800, order=5),
        "vip": Policy(name="v", match=PolicyMatch(tier="vip"), first_response_s=900, order=10),
        "all": Policy(name="a", first_response_s=3600, order=100),
    }

    def chosen(**facts):
        return choose_policy(policies, ticket().model_copy(update=facts))[0]

    assert chosen(customer_tier="vip", team="billing") == "vip-billing"
    assert chosen(customer_tier="vip", team="returns") == "vip"
    assert chosen(team="billing") == "billing"
    # tickets filed before the tier and team were carried, or with neither known yet
    assert chosen() == "all" and chosen(customer_tier=None, team=None) == "all"
    assert chosen(customer_tier="standard") == "all"


def test_a_decision_taken_elsewhere_settles_the_clock_the_same_way():
    breached = first_response_clock(ticket(), "p", Policy(name="d", first_response_s=600, warn_before_s=60))
    breached.settle("warning", T0 + timedelta(seconds=540))
    assert breached.warned and breached.next_fire_at() == breached.due_at
    breached.settle("breached", None)
    assert breached.state == ClockState.breached and breached.breached_at == T0 + timedelta(seconds=600)

    met = first_response_clock(ticket(), "p", Policy(name="d", first_response_s=600))
    met.settle("met", T0 + timedelta(seconds=200))
    assert met.state == ClockState.met and met.used(T0 + timedelta(hours=1), None) == 200
    met.settle("breached", None)  # an outcome is taken once
    assert met.state == ClockState.met


def test_a_clock_past_its_due_time_is_overdue_until_it_has_its_outcome():
    clock = first_response_clock(ticket(), "p", Policy(name="d", first_response_s=600))
    assert not clock.overdue(T0 + timedelta(seconds=599)) and clock.overdue(T0 + timedelta(seconds=600))
    clock.pause(T0 + timedelta(seconds=100), None)
    assert not clock.overdue(T0 + timedelta(hours=5))  # paused: nothing is being spent
