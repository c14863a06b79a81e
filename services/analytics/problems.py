"""Recurring problems: tickets of different customers about the same product and the same kind of fault,
over a sliding window. Pure (no I/O); the live read model analytics serves at GET /v1/problems.

A ticket joins the problem of its (product, fault): the product is the code (SKU) the message gives, else
the product it names, and the fault kind comes from a bilingual lexicon (services/analytics/similar.py),
so an English and an Arabic report of one fault meet. Two refinements:
- a message naming only the product ("my kettle leaks") joins the largest problem of that fault whose
  tickets give a code *and* name that product most, rather than starting a problem of its own (and the first
  report with a code takes in such messages that came before it);
- a message naming a product but no fault the lexicon knows joins the problem of that product whose
  wording is nearest (MinHash LSH over character shingles, services/analytics/minhash.py), if one is near
  enough.
A problem is listed once `min_tickets` tickets of at least two customers are in the window, and detected
(`deskstream.problem.detected`) once, when it reaches `detect_at`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.analytics.minhash import Hasher, Index, similarity
from services.analytics.similar import Features, shingles
from shared.events import stable_id

NUM_PERM = 64
FAULT_LABELS = {
    "not_working": "not working",
    "leaking": "leaking",
    "overheating": "overheating",
    "late_delivery": "late or missing delivery",
    "missing": "parts missing",
    "wrong_item": "wrong item sent",
    "damaged": "damaged on arrival",
    "charged_twice": "charged twice",
    "refund": "refund requested",
    "battery": "battery or charging",
}


BANDS, ROWS = 21, 3  # for NUM_PERM and a Jaccard of 0.35 (`near`): see services/analytics/minhash.py
_HASHER = Hasher(NUM_PERM, seed=19)  # its permutations, drawn once: drawing them is most of the cost


@dataclass(frozen=True, slots=True)
class Member:
    ticket_id: str
    customer_id: str
    at: datetime
    channel: str
    language: str | None
    features: Features


@dataclass
class Problem:
    id: str
    product: str
    fault: str
    members: dict[str, Member] = field(default_factory=dict)
    detected: bool = False

    @property
    def first_seen(self) -> datetime:
        return min(m.at for m in self.members.values())

    @property
    def last_seen(self) -> datetime:
        return max(m.at for m in self.members.values())

    @property
    def customers(self) -> int:
        return len({m.customer_id for m in self.members.values()})

    def names(self) -> list[str]:
        """The products its tickets name (kettle…), most named first."""
        counted = Counter(p for m in self.members.values() for p in m.features.products)
        return [p for p, _ in counted.most_common()]

    @property
    def label(self) -> str:
        names = [n for n in self.names() if n != self.product.lower()]
        product = f"{self.product} ({names[0]})" if names and self.product.isupper() else self.product
        return f"{product}: {FAULT_LABELS.get(self.fault, self.fault.replace('_', ' '))}"

    def view(self, *, sample: int | None = 10, since: datetime | None = None) -> dict[str, Any]:
        members = sorted(self.members.values(), key=lambda m: m.at)

        def counted(values: Iterable[str]) -> list[str]:
            return [v for v, _ in Counter(values).most_common()]

        return {
            "id": self.id,
            "label": self.label,
            "product": self.product,
            "fault": self.fault,
            "tickets": len(members),
            "tickets_today": sum(1 for m in members if since is None or m.at >= since),
            "customers": self.customers,
            "ticket_ids": [m.ticket_id for m in (members if sample is None else members[-sample:])],
            "first_seen": members[0].at,
            "last_seen": members[-1].at,
            "channels": counted(m.channel for m in members),
            "languages": counted(m.language for m in members if m.language),
            "products": self.names(),
            "skus": counted(s for m in members for s in m.features.skus),
            "order_ids": counted(o for m in members for o in m.features.orders)[:50],
            "detected": self.detected,
        }


@dataclass
class ProblemBook:
    window: timedelta = timedelta(days=7)
    min_tickets: int = 3
    detect_at: int = 10
    near: float = 0.35  # the wording similarity (estimated Jaccard) that places a ticket without a known fault
    problems: dict[tuple[str, str], Problem] = field(default_factory=dict)
    where: dict[str, tuple[str, str]] = field(default_factory=dict)  # ticket → its problem's key
    wording: Index = field(default_factory=lambda: Index(BANDS, ROWS))  # each ticket's MinHash signature

    def add(
        self, *, ticket_id: str, customer_id: str, at: datetime, channel: str, language: str | None, features: Features
    ) -> Problem | None:
        """File the ticket under its problem; returns the problem if this ticket made it detected."""
        if ticket_id in self.where:
            return None
        key = self.key_of(features)
        if key is None:
            return None
        member = Member(ticket_id, customer_id, at, channel, language, features)
        problem = self.problems.get(key)
        if problem is None:
            # named by what it is and the day it started, not by which ticket an instance read first: every
            # analytics instance (each reads all partitions, in its own interleaving) names it alike
            day = at.date().isoformat()
            problem = Problem(id="PB-" + stable_id("problem", *key, day, size=12).upper(), product=key[0], fault=key[1])
            self.problems[key] = problem
            if features.skus and key[0] == features.skus[0]:
                self._absorb(problem, features)
        problem.members[ticket_id] = member
        self.where[ticket_id] = key
        grams = frozenset(shingles(features.text))  # not kept on the features: only the MinHash is
        if grams:
            self.wording.insert(ticket_id, _HASHER.signature(grams))
        if not problem.detected and len(problem.members) >= self.detect_at and problem.customers >= 2:
            problem.detected = True
            return problem
        return None

    def _absorb(self, coded: Problem, f: Features) -> None:
        """A problem known by its code takes in the problem of the same fault that reports named only by the
        product (they came first: "my kettle leaks", then "KT-200 leaks"), unless another code of that product
        has the fault too (then which one they meant is not known)."""
        name = f.products[0] if f.products else None
        named = self.problems.get((name, coded.fault)) if name else None
        rivals = [
            p
            for (prod, flt), p in self.problems.items()
            if flt == coded.fault and prod.isupper() and p is not coded and p.names()[:1] == [name]
        ]
        if named is None or rivals:
            return
        coded.members.update(named.members)
        coded.detected = coded.detected or named.detected  # the product team heard of it already
        for ticket_id in named.members:
            self.where[ticket_id] = (coded.product, coded.fault)
        del self.problems[(named.product, coded.fault)]

    def key_of(self, f: Features) -> tuple[str, str] | None:
        product = f.product
        if product is None:
            return None
        fault = f.fault
        if fault is None:
            fault = self._nearest_fault(f, product)
            if fault is None:
                return None
        if not f.skus and f.products:
            coded = [
                p
                for (prod, flt), p in self.problems.items()
                if flt == fault and prod.isupper() and p.names()[:1] == [f.products[0]]
            ]
            if coded:
                return max(coded, key=lambda p: len(p.members)).product, fault
        return product, fault

    def _nearest_fault(self, f: Features, product: str) -> str | None:
        grams = frozenset(shingles(f.text))
        if not grams or not len(self.wording):
            return None
        probe = _HASHER.signature(grams)
        best: tuple[float, str] | None = None
        for ticket_id in self.wording.candidates(probe):
            key, theirs = self.where.get(ticket_id), self.wording.get(ticket_id)
            if key is None or key[0] != product or theirs is None:
                continue
            near = similarity(probe, theirs)
            if near >= self.near and (best is None or near > best[0]):
                best = (near, key[1])
        return best[1] if best else None

    def remove(self, ticket_id: str) -> None:
        """Spam, deleted, purged or erased: no longer a report of anything."""
        key = self.where.pop(ticket_id, None)
        self.wording.remove(ticket_id)
        problem = self.problems.get(key) if key else None
        if problem is not None:
            problem.members.pop(ticket_id, None)
            if not problem.members:
                del self.problems[key]  # type: ignore[arg-type]

    def expire(self, now: datetime) -> None:
        for problem in list(self.problems.values()):
            for member in [m for m in problem.members.values() if now - m.at > self.window]:
                self.remove(member.ticket_id)

    def active(self) -> list[Problem]:
        """The problems worth listing, most tickets first."""
        found = [p for p in self.problems.values() if len(p.members) >= self.min_tickets and p.customers >= 2]
        return sorted(found, key=lambda p: (-len(p.members), p.id))

    def find(self, problem_id: str) -> Problem | None:
        return next((p for p in self.problems.values() if p.id == problem_id), None)
