"""The dispatcher's agent index picks exactly whom the plain ranking picks, as loads come and go."""
import random
from datetime import UTC, datetime, timedelta

from services.routing.domain import Agent, Needs, Presence, WorkingHours, best, offerable
from services.routing.roster import Roster

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
SHIFTS = [None, WorkingHours(timezone="UTC", hours={"mon": [("09:00", "17:00")]}),
          WorkingHours(timezone="UTC", hours={"tue": [("09:00", "17:00")]})]


def random_agent(rng: random.Random, i: int) -> Agent:
    return Agent(id=f"a{i}", name=f"a{i}", capacity=rng.choice([0, 1, 2, 3, 5]),
                 presence=rng.choice([Presence.online, Presence.online, Presence.away]),
                 channels=rng.choice([["chat"], ["chat", "email"], []]), languages=rng.choice([["en"], ["de"], []]),
                 skills=rng.choice([["general"], ["refunds:2", "general"], ["refunds:4"]]),
                 team=rng.choice([None, "vip"]), working_hours=rng.choice(SHIFTS))


def random_needs(rng: random.Random) -> Needs:
    return Needs(channel=rng.choice(["chat", "email"]), language=rng.choice([None, "en", "de", "fr"]),
                 skills=rng.choice([[], ["refunds"], ["refunds:3"]]), team=rng.choice([None, None, "vip"]))


def test_the_index_picks_whom_the_ranking_picks_through_assignments_releases_and_profile_changes():
    rng = random.Random(11)
    for _ in range(40):
        roster = Roster()
        for i in range(rng.randint(0, 30)):
            roster.put(random_agent(rng, i))
        now = NOW
        for step in range(150):
            now += timedelta(seconds=rng.randint(0, 30))
            needs, previous = random_needs(rng), rng.choice([None, "a1", "a2", "nobody"])
            online = [a for a in roster.agents.values() if a.presence == Presence.online]
            at = rng.choice([None, now])
            if at is not None:
                assert roster.offerable(needs, at) == offerable(online, needs, at)
            expected = best(online, needs, at, previous=previous)
            found = roster.best(needs, at, previous=previous)
            assert (found and found.id) == (expected and expected.id)
            if found is not None and rng.random() < 0.7:  # assigned
                found.tickets.append(f"t{step}")
                found.last_assigned_at = now
                roster.changed(found)
            carrying = [a for a in roster.agents.values() if a.tickets]
            if carrying and rng.random() < 0.3:  # a ticket resolved
                agent = rng.choice(carrying)
                agent.tickets.pop(rng.randrange(len(agent.tickets)))
                roster.changed(agent)
            if roster.agents and rng.random() < 0.1:  # a profile or presence changed
                old = rng.choice(list(roster.agents.values()))
                new = random_agent(rng, int(old.id[1:]))
                new.tickets, new.last_assigned_at = old.tickets, old.last_assigned_at
                roster.put(new)
        assert roster.has_room(now) == any(
            a.presence == Presence.online and a.load < a.capacity and
            (a.working_hours is None or a.working_hours.on_shift(now)) for a in roster.agents.values())
