"""The numbers analytics serves, kept in memory and fed with what each event contributes. Pure.

Adding is idempotent: a ticket's state is kept by version, and each fact and SLA fact is counted
once per key (the keys a ticket has counted are kept with it), so an event read twice — a
redelivery, a replay after a restart — changes nothing. The whole tally can be written out and
read back (`dump`, `restore`): analytics keeps it in snapshots, not row by row."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.analytics.domain import (
    AGE_BUCKETS,
    BACKLOG_STATUSES,
    BUCKETS,
    DURATION_BUCKETS,
    JUNK_STATUSES,
    age_label,
    bucket_bound,
    csat_numbers,
    distribution,
    floor_time,
    percentile,
    ratio,
    utc,
)

TOP_TAGS = 10
DURATION_KINDS = ("first_response", "resolution")


class TicketView:
    """What analytics knows of one ticket: its latest state."""

    __slots__ = ("channel", "created_at", "status", "priority", "assignee", "tags", "version", "rank", "counted")

    def __init__(self) -> None:
        self.channel: str | None = None
        self.created_at: datetime | None = None
        self.status: str | None = None
        self.priority: str | None = None
        self.assignee: str | None = None
        self.tags: tuple[str, ...] = ()
        self.version, self.rank = -1, -1
        self.counted: set[str] = set()  # the keys of the facts and SLA facts added for this ticket

    def dump(self) -> list[Any]:
        return [
            self.channel,
            self.created_at.isoformat() if self.created_at else None,
            self.status,
            self.priority,
            self.assignee,
            list(self.tags),
            self.version,
            self.rank,
            sorted(self.counted),
        ]

    @classmethod
    def restore(cls, row: list[Any]) -> TicketView:
        view = cls()
        (view.channel, created, view.status, view.priority, view.assignee, tags, view.version, view.rank, counted) = row
        view.created_at = datetime.fromisoformat(created) if created else None
        view.tags, view.counted = tuple(tags), set(counted)
        return view


@dataclass
class Numbers:
    """Everything the summary and /metrics show, as of one moment: built whole, then swapped
    in, so a reader never sees half of an update."""

    as_of: datetime | None = None
    refresh_s: float = 0.0
    window_start: datetime | None = None
    created_by_channel: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    backlog_by_status: dict[str, int] = field(default_factory=dict)
    backlog_by_age: dict[str, int] = field(default_factory=dict)
    oldest_backlog_age_s: float | None = None
    open_by_agent: dict[str, int] = field(default_factory=dict)
    created_last_24h: dict[str, int] = field(default_factory=dict)
    # kind → channel → ({le: n}, summed seconds)
    histograms: dict[str, dict[str, tuple[dict[int | None, int], float]]] = field(default_factory=dict)
    # agent → kind → (n, summed seconds)
    agents: dict[str, dict[str, tuple[int, float]]] = field(default_factory=dict)
    sla: list[dict[str, Any]] = field(default_factory=list)
    window_durations: dict[str, dict[str, Any]] = field(default_factory=dict)
    top_tags: list[tuple[str, int]] = field(default_factory=list)
    # customer confirmation: responses, satisfied (ratings 4-5) and its share, overall and by agent, channel, team
    csat: dict[str, Any] = field(default_factory=dict)


class Tally:
    def __init__(self) -> None:
        self.tickets: dict[str, TicketView] = {}
        self.created_by_channel: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.backlog: set[str] = set()
        self.agent_counts: Counter[tuple[str, str]] = Counter()
        self.agent_seconds: Counter[tuple[str, str]] = Counter()
        self.hist: dict[tuple[str, str], Counter[int | None]] = {}
        self.hist_sum: Counter[tuple[str, str]] = Counter()
        # (at, channel, agent, seconds) of every first response and first resolution
        self.durations: dict[str, list[tuple[datetime, str, str | None, float]]] = {k: [] for k in DURATION_KINDS}
        self.sla_counts: Counter[tuple[str, str, str]] = Counter()
        self.sla_rows: list[tuple[datetime, str, str, str]] = []  # (at, target, policy, kind)
        self.csat: dict[str, dict[str, Any]] = {}  # survey id → its latest answer
        self.rows = 0

    # ------------------------------------------------------------ feeding

    def knows(self, state: dict[str, Any]) -> bool:
        """True when storing `state` would tell nothing new: it is not later than what is
        known, or it is later but changes none of the fields analytics reads. Most ticket
        events (messages, notes, deliveries) are of the second kind, so they store nothing."""
        view = self.tickets.get(state["ticket_id"])
        if view is None or view.channel is None:
            return False
        if (state["version"], state["rank"]) <= (view.version, view.rank):
            return True
        return (view.status, view.priority, view.assignee, view.tags) == (
            state["status"],
            state["priority"],
            state["assignee"],
            tuple(state["tags"]),
        )

    def add_state(self, state: dict[str, Any]) -> None:
        """Rows may come in any order (the store is read back unordered): the ticket's channel
        and creation time come from whichever row has them, the rest from the latest row."""
        ticket_id = state["ticket_id"]
        view = self.tickets.get(ticket_id)
        if view is None:
            view = self.tickets[ticket_id] = TicketView()
        self.rows += 1
        if view.channel is None and state.get("channel"):
            view.channel, view.created_at = state["channel"], utc(state["created_at"])
            self.created_by_channel[view.channel] += 1
        if (state["version"], state["rank"]) <= (view.version, view.rank):
            return
        if view.status is not None:
            self.by_status[view.status] -= 1
        view.version, view.rank = state["version"], state["rank"]
        view.status, view.priority, view.assignee = state["status"], state["priority"], state["assignee"]
        view.tags = tuple(dict.fromkeys(state.get("tags") or ()))
        self.by_status[view.status] += 1
        if view.status in BACKLOG_STATUSES:
            self.backlog.add(ticket_id)
        else:
            self.backlog.discard(ticket_id)

    def _first_time(self, row: dict[str, Any]) -> bool:
        """Is this fact (or SLA fact) new for its ticket? Marks it counted."""
        view = self.tickets.get(row["ticket_id"])
        if view is None:
            view = self.tickets[row["ticket_id"]] = TicketView()
        if row["_id"] in view.counted:
            return False
        view.counted.add(row["_id"])
        return True

    def add_fact(self, fact: dict[str, Any]) -> None:
        if not self._first_time(fact):
            return
        self.rows += 1
        kind, agent = fact["kind"], fact.get("agent")
        if agent:
            self.agent_counts[(agent, kind)] += 1
        if kind in DURATION_KINDS:
            seconds, channel = float(fact["seconds"]), fact["channel"]
            if agent:  # (typeshed's Counter holds int values; these hold float sums, as Counter allows)
                self.agent_seconds[(agent, kind)] += seconds  # type: ignore[assignment]
            self.hist.setdefault((kind, channel), Counter())[bucket_bound(seconds, DURATION_BUCKETS[kind])] += 1
            self.hist_sum[(kind, channel)] += seconds  # type: ignore[assignment]  # float sums, as above
            self.durations[kind].append((utc(fact["at"]), channel, agent, seconds))

    def add_sla(self, fact: dict[str, Any]) -> None:
        if not self._first_time(fact):
            return
        self.rows += 1
        self.sla_counts[(fact["target"], fact["policy_id"], fact["kind"])] += 1
        self.sla_rows.append((utc(fact["at"]), fact["target"], fact["policy_id"], fact["kind"]))

    def add_csat(self, answer: dict[str, Any]) -> None:
        """The latest answer per confirmation request counts (a redelivered or older one changes nothing)."""
        known = self.csat.get(answer["survey_id"])
        if known is None or utc(answer["at"]) > known["at"]:
            self.csat[answer["survey_id"]] = {**answer, "at": utc(answer["at"])}

    # ------------------------------------------------------------ writing out and reading back
    def dump(self) -> dict[str, Any]:
        """Everything, JSON-ready; the counters that follow from the tickets are left out."""
        return {
            "tickets": {t: v.dump() for t, v in self.tickets.items()},
            "agent_counts": [[a, k, n] for (a, k), n in self.agent_counts.items()],
            "agent_seconds": [[a, k, s] for (a, k), s in self.agent_seconds.items()],
            "hist": [[k, c, [[le, n] for le, n in counts.items()]] for (k, c), counts in self.hist.items()],
            "hist_sum": [[k, c, s] for (k, c), s in self.hist_sum.items()],
            "durations": {k: [[at.isoformat(), c, a, s] for at, c, a, s in rows] for k, rows in self.durations.items()},
            "sla_counts": [[t, p, k, n] for (t, p, k), n in self.sla_counts.items()],
            "sla_rows": [[at.isoformat(), t, p, k] for at, t, p, k in self.sla_rows],
            "csat": [{**a, "at": a["at"].isoformat()} for a in self.csat.values()],
            "rows": self.rows,
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> Tally:
        tally = cls()
        for ticket_id, row in data.get("tickets", {}).items():
            view = tally.tickets[ticket_id] = TicketView.restore(row)
            if view.channel is not None:
                tally.created_by_channel[view.channel] += 1
            if view.status is not None:
                tally.by_status[view.status] += 1
                if view.status in BACKLOG_STATUSES:
                    tally.backlog.add(ticket_id)
        tally.agent_counts.update({(a, k): n for a, k, n in data.get("agent_counts", [])})
        tally.agent_seconds.update({(a, k): s for a, k, s in data.get("agent_seconds", [])})
        for k, c, counts in data.get("hist", []):
            tally.hist[(k, c)] = Counter(dict(counts))
        tally.hist_sum.update({(k, c): s for k, c, s in data.get("hist_sum", [])})
        for k, rows in data.get("durations", {}).items():
            tally.durations[k] = [(datetime.fromisoformat(at), c, a, s) for at, c, a, s in rows]
        tally.sla_counts.update({(t, p, k): n for t, p, k, n in data.get("sla_counts", [])})
        tally.sla_rows = [(datetime.fromisoformat(at), t, p, k) for at, t, p, k in data.get("sla_rows", [])]
        for a in data.get("csat", []):
            tally.csat[a["survey_id"]] = {**a, "at": datetime.fromisoformat(a["at"])}
        tally.rows = data.get("rows", 0)
        return tally

    # ------------------------------------------------------------ reading

    def numbers(self, now: datetime, window: timedelta) -> Numbers:
        window_start = now - window
        n = Numbers(
            as_of=now,
            window_start=window_start,
            created_by_channel={k: v for k, v in self.created_by_channel.items() if v},
            by_status={k: v for k, v in self.by_status.items() if v},
            backlog_by_status=dict.fromkeys(BACKLOG_STATUSES, 0),
            backlog_by_age={label: 0 for _, label in AGE_BUCKETS},
            sla=[{"target": t, "policy_id": p, "kind": k, "n": c} for (t, p, k), c in sorted(self.sla_counts.items())],
        )
        for ticket_id in self.backlog:
            view = self.tickets[ticket_id]
            assert view.status is not None  # in the backlog: its status is one of BACKLOG_STATUSES
            n.backlog_by_status[view.status] += 1
            if view.created_at is not None:
                age = max(0.0, (now - view.created_at).total_seconds())
                n.backlog_by_age[age_label(age)] += 1
                n.oldest_backlog_age_s = max(age, n.oldest_backlog_age_s or 0.0)
            if view.assignee:
                n.open_by_agent[view.assignee] = n.open_by_agent.get(view.assignee, 0) + 1
        day_ago = now - timedelta(days=1)
        tags: Counter[str] = Counter()
        for view in self.tickets.values():
            if view.created_at is None or view.created_at < window_start:
                continue
            if view.created_at >= day_ago:
                assert view.channel is not None  # set together with created_at
                n.created_last_24h[view.channel] = n.created_last_24h.get(view.channel, 0) + 1
            if view.status not in JUNK_STATUSES:
                tags.update(view.tags)
        n.top_tags = sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_TAGS]
        for (kind, channel), counts in self.hist.items():
            n.histograms.setdefault(kind, {})[channel] = (dict(counts), self.hist_sum[(kind, channel)])
        for (agent, kind), count in self.agent_counts.items():
            n.agents.setdefault(agent, {})[kind] = (count, self.agent_seconds.get((agent, kind), 0.0))
        answers = list(self.csat.values())
        n.csat = {
            **csat_numbers(answers),
            **{
                f"by_{dimension}": {
                    key: csat_numbers([a for a in answers if (a.get(dimension) or "none") == key])
                    for key in sorted({a.get(dimension) or "none" for a in answers})
                }
                for dimension in ("agent", "channel", "team")
            },
        }
        n.window_durations = {
            kind: distribution([s for at, _, _, s in rows if at >= window_start])
            for kind, rows in self.durations.items()
        }
        return n

    def created_series(self, starts: list[datetime], bucket: str, dimension: str | None) -> list[dict[str, Any]]:
        """Tickets created per bucket, split by channel, priority or tag (as they are now)."""
        index, start, end = _span(starts, bucket)
        values: dict[str, list[int]] = {}
        for view in self.tickets.values():
            at = view.created_at
            if at is None or not start <= at < end:
                continue
            if dimension == "tag":
                if view.status in JUNK_STATUSES:
                    continue
                keys: tuple[str, ...] = view.tags
            else:
                keys = ({"channel": view.channel, "priority": view.priority}.get(dimension or "") or "all",)
            i = index[floor_time(at, bucket)]
            for key in keys:
                values.setdefault(key, [0] * len(starts))[i] += 1
        ordered = sorted(values.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
        return [{"key": k, "total": sum(v), "values": v} for k, v in ordered]

    def duration_series(
        self, kind: str, starts: list[datetime], bucket: str, dimension: str | None
    ) -> list[dict[str, Any]]:
        """Median and p90 seconds per bucket (by when the reply or resolution happened)."""
        index, start, end = _span(starts, bucket)
        values: dict[str, list[list[float]]] = {}
        for at, channel, agent, seconds in self.durations[kind]:
            if not start <= at < end:
                continue
            key = {"channel": channel, "agent": agent or "unassigned"}.get(dimension or "", "all")
            values.setdefault(key, [[] for _ in starts])[index[floor_time(at, bucket)]].append(seconds)
        out = []
        for key, per in sorted(values.items()):
            p50, p90 = ([None if (p := percentile(v, q)) is None else round(p, 1) for v in per] for q in (50, 90))
            out.append(
                {
                    "key": key,
                    "total": sum(len(v) for v in per),
                    "values": p50,
                    "p90": p90,
                    "count": [len(v) for v in per],
                }
            )
        return out

    def compliance_series(self, starts: list[datetime], bucket: str, dimension: str | None) -> list[dict[str, Any]]:
        """Met / (met + breached) per bucket (by when the outcome happened)."""
        index, start, end = _span(starts, bucket)
        counts: dict[str, dict[str, list[int]]] = {}
        for at, target, policy, kind in self.sla_rows:
            if kind == "warning" or not start <= at < end:
                continue
            key = {"target": target, "policy": policy}.get(dimension or "", "all")
            per = counts.setdefault(key, {"met": [0] * len(starts), "breached": [0] * len(starts)})
            per[kind][index[floor_time(at, bucket)]] += 1
        return [
            {
                "key": k,
                "total": sum(c["met"]) + sum(c["breached"]),
                "met": c["met"],
                "breached": c["breached"],
                "values": [ratio(m, m + b) for m, b in zip(c["met"], c["breached"])],
            }
            for k, c in sorted(counts.items())
        ]


def _span(starts: list[datetime], bucket: str) -> tuple[dict[datetime, int], datetime, datetime]:
    """Each bucket start's position, and the whole span [first start, end of the last bucket)."""
    return {at: i for i, at in enumerate(starts)}, starts[0], starts[-1] + BUCKETS[bucket]
