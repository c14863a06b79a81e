"""CSAT in analytics: customers' answers to confirmation requests counted overall, per agent, channel and team,
on /v1/summary and /metrics; a changed answer replaces the earlier one, a redelivered one counts once."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from services.analytics.service import AnalyticsService
from services.analytics.tally import Tally
from shared.events import EventType, TicketCsatReceived, make_event
from tests.unit.test_analytics_domain import T0, Story, minutes
from tests.unit.test_analytics_metrics import families, samples
from tests.unit.test_analytics_readmodel import new_service, play


def answered(story: Story, *, survey: str, rating: int, solved: bool, agent: str, team: str | None, at):
    payload = TicketCsatReceived(ticket=story.snap, survey_id=survey, solved=solved, rating=rating,
                                 agent_id=agent, team=team, at=at)
    return make_event(EventType.TICKET_CSAT_RECEIVED, payload, source="deskstream/tickets", subject=story.id, time=at)


def three_answers() -> list:
    chat = Story("TK-A", channel="chat").assign("layla", T0).status("resolved", T0 + minutes(5))
    mail = Story("TK-B", channel="email").assign("omar", T0).status("resolved", T0 + minutes(5))
    sms = Story("TK-C", channel="sms").assign("layla", T0).status("resolved", T0 + minutes(5))
    return [
        *chat.events, *mail.events, *sms.events,
        answered(chat, survey="s-a", rating=5, solved=True, agent="layla", team="orders", at=T0 + minutes(10)),
        answered(mail, survey="s-b", rating=2, solved=False, agent="omar", team="billing", at=T0 + minutes(11)),
        answered(sms, survey="s-c", rating=4, solved=True, agent="layla", team="orders", at=T0 + minutes(12)),
    ]


async def test_summary_shows_csat_as_the_share_of_ratings_4_and_5_overall_and_per_agent_channel_team():
    summary = await play(new_service(), three_answers())
    csat = summary["csat"]
    assert (csat["responses"], csat["satisfied"], csat["satisfied_pct"], csat["solved"]) == (3, 2, 66.7, 2)
    assert csat["by_agent"]["layla"]["satisfied_pct"] == 100.0 and csat["by_agent"]["omar"]["satisfied_pct"] == 0.0
    assert csat["by_channel"]["email"]["responses"] == 1 and csat["by_team"]["orders"]["responses"] == 2


async def test_a_changed_answer_replaces_the_first_and_a_redelivery_counts_once():
    events = three_answers()
    mail = Story("TK-B", channel="email")
    changed = answered(mail, survey="s-b", rating=5, solved=True, agent="omar", team="billing", at=T0 + minutes(30))
    summary = await play(new_service(), [*events, changed, changed, events[-2]])  # the old answer again, late
    assert summary["csat"]["responses"] == 3 and summary["csat"]["by_agent"]["omar"]["satisfied_pct"] == 100.0


async def test_before_any_answer_the_summary_says_so_without_a_percentage():
    assert (await play(new_service(), Story("TK-A").events))["csat"]["satisfied_pct"] is None


async def test_csat_survives_a_snapshot_of_the_tally():
    service = new_service()
    await play(service, three_answers())
    restored = Tally.restore(service.tally.dump())
    assert restored.numbers(T0 + minutes(60), service.window).csat == service.numbers.csat


async def test_metrics_count_responses_and_satisfied_ones_per_channel_team_and_agent():
    service: AnalyticsService = new_service()
    await play(service, three_answers())
    registry = CollectorRegistry(auto_describe=True)
    service.register_metrics(registry)
    found = families(generate_latest(registry))
    responses = samples(found["deskstream_csat_responses"])
    assert responses[(("agent", "layla"), ("channel", "chat"), ("team", "orders"))] == 1
    happy = samples(found["deskstream_csat_satisfied_responses"])
    assert happy[(("agent", "omar"), ("channel", "email"), ("team", "billing"))] == 0
    assert samples(found["deskstream_csat_satisfied_percent"])[()] == 66.7
