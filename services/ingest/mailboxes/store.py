"""What ingest keeps about mailboxes: `ingest_mailboxes` (configuration, password sealed), `ingest_mailbox_state`
(UIDVALIDITY, the last UID filed, counters: written only by the lease holder) and `ingest_mailbox_leases`.

A lease is a unique `_id` per mailbox and time period (`<mailbox>:<period>`): whoever inserts it holds
the mailbox for that period. FerretDB makes no guarded update atomic, but it does make an insert under
a unique `_id` atomic, so exactly one instance polls a mailbox in any period. The holder claims the
next period while it holds the current one, so it keeps the mailbox while it lives (and, its owner
name being stable, across its own restart); another instance takes over a period after it stopped."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from shared.events import utcnow
from shared.mongo import Mongo

LEASE_S = 20.0


@dataclass
class MailboxState:
    uidvalidity: int | None = None
    last_uid: int = 0  # every UID up to this one was filed (acknowledged by Kafka) or refused for good
    filed: int = 0
    refused: int = 0
    last_poll: datetime | None = None
    last_error: str | None = None


class MailboxStore:
    def __init__(self, mongo: Mongo) -> None:
        self.configs = mongo.collection("ingest_mailboxes")
        self.states = mongo.collection("ingest_mailbox_state")
        self.leases = mongo.collection("ingest_mailbox_leases")

    # ------------------------------------------------------------ configuration (admin API)
    async def put(self, mailbox_id: str, config: dict[str, Any]) -> None:
        await self.configs.replace_one(
            {"_id": mailbox_id}, {"_id": mailbox_id, **config, "updated_at": utcnow()}, upsert=True
        )

    async def get(self, mailbox_id: str) -> dict[str, Any] | None:
        return await self.configs.find_one({"_id": mailbox_id})

    async def all(self) -> list[dict[str, Any]]:
        return [doc async for doc in self.configs.find({})]

    async def delete(self, mailbox_id: str) -> bool:
        """The mailbox and what was known about it: configured again, it starts afresh (content ids
        keep mails filed before from being filed twice)."""
        gone = (await self.configs.delete_one({"_id": mailbox_id})).deleted_count > 0
        await self.states.delete_one({"_id": mailbox_id})
        return gone

    # ------------------------------------------------------------ state (the lease holder only)
    async def state(self, mailbox_id: str) -> MailboxState:
        doc = await self.states.find_one({"_id": mailbox_id}) or {}
        return MailboxState(**{k: v for k, v in doc.items() if k in MailboxState.__dataclass_fields__})

    async def save(self, mailbox_id: str, state: MailboxState) -> None:
        await self.states.replace_one({"_id": mailbox_id}, {"_id": mailbox_id, **state.__dict__}, upsert=True)

    # ------------------------------------------------------------ leases
    async def hold(self, mailbox_id: str, owner: str, now: float | None = None) -> bool:
        """Does `owner` hold the mailbox for the current period? Claims it, and the next one, if free."""
        period = int((now if now is not None else time.time()) // LEASE_S)
        held = await self._claim(mailbox_id, period, owner)
        if held:
            await self._claim(mailbox_id, period + 1, owner)
            await self.leases.delete_many({"mailbox_id": mailbox_id, "period": {"$lt": period - 2}})
        return held

    async def _claim(self, mailbox_id: str, period: int, owner: str) -> bool:
        key = f"{mailbox_id}:{period}"
        try:
            await self.leases.insert_one({"_id": key, "mailbox_id": mailbox_id, "period": period, "owner": owner})
            return True
        except DuplicateKeyError:
            doc = await self.leases.find_one({"_id": key})
            return doc is not None and doc.get("owner") == owner

    async def holder(self, mailbox_id: str, now: float | None = None) -> str | None:
        period = int((now if now is not None else time.time()) // LEASE_S)
        doc = await self.leases.find_one({"_id": f"{mailbox_id}:{period}"})
        return doc.get("owner") if doc else None
