"""`csat_settings`: the one document holding what an admin set for customer confirmation."""

from __future__ import annotations

from typing import Any

from services.tickets.csat.rules import CsatSettings

SETTINGS_ID = "csat"


class CsatStore:
    def __init__(self, mongo: Any) -> None:
        self.collection = mongo.collection("csat_settings")

    async def settings(self) -> CsatSettings:
        doc = await self.collection.find_one({"_id": SETTINGS_ID})
        if doc is None:
            return CsatSettings()
        return CsatSettings.model_validate({k: v for k, v in doc.items() if k != "_id"})

    async def put(self, settings: CsatSettings) -> None:
        await self.collection.replace_one(
            {"_id": SETTINGS_ID}, {"_id": SETTINGS_ID, **settings.model_dump(mode="json")}, upsert=True
        )
