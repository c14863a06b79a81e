"""SLA's decisions (a warning, a breach, a met target): claimed exactly once by a unique key
(`EventClaims`), and marked sent by inserting a marker rather than by updating the claim.

Why the marker: on FerretDB 1.24 an update reads the whole collection and holds up every other
write meanwhile, and the decisions collection only grows, so a `sent` flag set per event would
cost more with every event. Inserts stay cheap. Marked or flagged, a decision is sent; one that
is neither (its process died between the claim and the publish) is found when clocks are loaded
and published then, with its own id, so a consumer that saw it already drops it."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from shared.events import utcnow
from shared.mongo import Collection, DuplicateKeyError
from shared.outbox import EventClaims, Publish

log = logging.getLogger(__name__)


class SlaClaims(EventClaims):
    def __init__(self, collection: Collection, sent: Collection, publish: Publish) -> None:
        super().__init__(collection, publish)
        self.sent = sent
        self.unsent: dict[str, dict[str, Any]] = {}  # claimed here, publish not yet confirmed

    async def relay(self, doc: dict[str, Any]) -> None:
        if doc.get("sent"):
            return
        try:
            await self.publish(doc["topic"], doc["event"], doc["key"])
        except Exception:
            self.unsent[doc["_id"]] = doc  # the sweeper tries again
            raise
        self.unsent.pop(doc["_id"], None)
        try:
            await self.sent.insert_one({"_id": doc["_id"], "at": utcnow().isoformat()})
        except DuplicateKeyError:
            pass  # sent before (a re-send)

    async def sweep_once(self, older_than: timedelta = timedelta(seconds=3), limit: int = 200) -> int:
        """Publish again what this process claimed but could not publish (Kafka was away)."""
        stale = list(self.unsent.values())[:limit]
        for doc in stale:
            await self.relay(doc)
        return len(stale)

    async def all_claims(self) -> list[dict[str, Any]]:
        """Every decision (without its stored event) and whether it is known to be sent."""
        marked = {d["_id"] async for d in self.sent.find({}, {"_id": 1})}
        claims = []
        async for doc in self.collection.find({}, {"kind": 1, "at": 1, "sent": 1, "event.data.at": 1}):
            doc["sent"] = bool(doc.get("sent")) or doc["_id"] in marked
            claims.append(doc)
        return claims

    async def relay_unsent(self, claims: list[dict[str, Any]], older_than: timedelta = timedelta(seconds=3)) -> int:
        """Publish the decisions of `claims` nobody confirmed sending (their claimer died)."""
        cutoff = (utcnow() - older_than).isoformat()
        sent = 0
        for claim in claims:
            if claim["sent"] or claim["_id"] in self.unsent or claim.get("at", "") >= cutoff:
                continue
            doc = await self.collection.find_one({"_id": claim["_id"]})
            if doc and not doc.get("sent"):
                await self.relay(doc)
                sent += 1
        return sent


def decided_at(claim: dict[str, Any]) -> datetime | None:
    """When the claimed event says it happened (the answer's time for a met target)."""
    at = ((claim.get("event") or {}).get("data") or {}).get("at")
    return datetime.fromisoformat(at) if isinstance(at, str) else None
