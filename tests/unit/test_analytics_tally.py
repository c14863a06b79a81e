"""The in-memory tally: rows may come back from the store in any order, and the numbers must
not depend on it; a redundant state is recognised so that it is not stored at all."""
from __future__ import annotations

import random

from services.analytics.domain import contribution
from services.analytics.tally import Tally
from tests.unit.test_analytics_domain import T0, Story, minutes
from tests.unit.test_analytics_readmodel import NOW, a_morning


def rows_of(events) -> tuple[list, list, list]:
    states, facts, slas, seen = [], [], [], set()
    for e in events:
        c = contribution(e)
        for row, into in ([(c.state, states)] + [(f, facts) for f in c.facts] + [(c.sla, slas)]):
            if row and row["_id"] not in seen:
                seen.add(row["_id"])
                into.append(row)
    return states, facts, slas


def tally_of(states, facts, slas) -> Tally:
    t = Tally()
    for s in states:
        t.add_state(s)
    for f in facts:
        t.add_fact(f)
    for f in slas:
        t.add_sla(f)
    return t


def test_the_numbers_do_not_depend_on_the_order_rows_come_back_in():
    states, facts, slas = rows_of(a_morning())
    expected = tally_of(states, facts, slas).numbers(NOW, minutes(7 * 24 * 60))
    for seed in range(5):
        random.Random(seed).shuffle(states)
        random.Random(seed).shuffle(facts)
        assert tally_of(states, facts, slas).numbers(NOW, minutes(7 * 24 * 60)) == expected


def test_a_purge_read_back_before_the_tickets_first_state_still_counts_the_ticket():
    story = Story("TK-P", channel="sms", tags=("x",)).status("spam", T0 + minutes(1)).purge(T0 + minutes(2))
    states, _, _ = rows_of(story.events)
    t = tally_of(list(reversed(states)), [], [])
    assert dict(t.created_by_channel) == {"sms": 1}
    assert {k: v for k, v in t.by_status.items() if v} == {"purged": 1}
    assert t.backlog == set()


def test_statuses_add_up_to_the_tickets_through_every_move():
    story = Story("TK-1").assign("a", T0).reply("a", T0 + minutes(1)).status("resolved", T0 + minutes(2))
    story.customer_writes(T0 + minutes(3)).status("spam", T0 + minutes(4))
    t = Tally()
    for e in story.events:
        t.add_state(contribution(e).state)
        assert sum(t.by_status.values()) == 1
    assert t.tickets["TK-1"].status == "spam" and t.backlog == set()


def test_a_state_that_changes_nothing_analytics_reads_is_known_already():
    story = Story("TK-1").assign("a", T0)
    t = Tally()
    for e in story.events:
        t.add_state(contribution(e).state)
    story.customer_writes(T0 + minutes(1))  # new ticket, new message: the status stays "new"
    assert t.knows(contribution(story.events[-1]).state)
    story.tag("vip", at=T0 + minutes(2))
    assert not t.knows(contribution(story.events[-1]).state)
    assert t.knows(contribution(story.events[0]).state)  # an old state: nothing new either
