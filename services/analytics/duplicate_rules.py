"""The admin's rule for duplicates (`GET/PUT /v1/settings/duplicates`): from which score a new ticket is
marked `duplicate_of` the customer's earlier one, and from which score it is merged into it at once.

Stored in one document (`duplicates_settings`) and announced on `settings.changes`, so every analytics
process reads it again within a second and applies it to the next ticket; the reader itself only reads
two numbers it holds (no database read per message). Until an admin sets it, the environment's
`DUPLICATES_THRESHOLD` and `DUPLICATES_MERGE_ABOVE` hold."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from shared.http import ApiError

SETTINGS_ID = "duplicates"


class DuplicateSettings(BaseModel):
    suspect_above: float = Field(
        0.45, ge=0, le=1, description="a score from here on marks the new ticket `duplicate_of` the earlier one"
    )
    merge_above: float | None = Field(
        None,
        ge=0,
        le=1,
        description="a suspected duplicate scoring this or more is merged into the ticket it repeats; null: never",
    )

    @model_validator(mode="after")
    def _merge_only_what_is_suspected(self) -> DuplicateSettings:
        if self.merge_above is not None and self.merge_above < self.suspect_above:
            raise ValueError(
                "merge_above must be null or at least suspect_above (only a suspected duplicate is merged)"
            )
        return self

    def merged(self, change: DuplicateSettingsChange) -> DuplicateSettings:
        """These settings with what `change` names (an absent field keeps its value; `merge_above: null` is
        "never merge")."""
        return DuplicateSettings.model_validate({**self.model_dump(), **change.model_dump(exclude_unset=True)})


class DuplicateSettingsChange(BaseModel):
    suspect_above: float | None = Field(None, ge=0, le=1)
    merge_above: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _suspect_above_is_a_number(self) -> DuplicateSettingsChange:
        if "suspect_above" in self.model_fields_set and self.suspect_above is None:
            raise ValueError("suspect_above is a number from 0 to 1")
        return self


class DuplicateSettingsStore:
    """`duplicates_settings`: the one document holding what an admin set (none: the defaults)."""

    def __init__(self, mongo: Any, default: DuplicateSettings) -> None:
        self.collection = mongo.collection("duplicates_settings")
        self.default = default

    async def settings(self) -> DuplicateSettings:
        doc = await self.collection.find_one({"_id": SETTINGS_ID})
        if doc is None:
            return self.default
        return DuplicateSettings.model_validate({k: v for k, v in doc.items() if k != "_id"})

    async def put(self, settings: DuplicateSettings) -> None:
        await self.collection.replace_one(
            {"_id": SETTINGS_ID}, {"_id": SETTINGS_ID, **settings.model_dump(mode="json")}, upsert=True
        )


def build_router(
    *,
    store: DuplicateSettingsStore,
    auth: Any,
    apply: Callable[[DuplicateSettings], Any],
    announce: Callable[[], Awaitable[None]],
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["duplicates"])

    @router.get(
        "/settings/duplicates",
        dependencies=[auth.admin],
        summary="Duplicate suspicion: the score that marks a ticket a duplicate, and the one that merges it",
    )
    async def get_settings() -> DuplicateSettings:
        return await store.settings()

    @router.put(
        "/settings/duplicates",
        dependencies=[auth.admin],
        summary="Set the scores of duplicate suspicion and of the auto-merge rule (every analytics process "
        "applies them within seconds)",
        description='`{"suspect_above": 0-1, "merge_above": null | 0-1}`; a field left out keeps its value, '
        "`merge_above: null` never merges. `merge_above` below `suspect_above` → 422.",
    )
    async def put_settings(body: DuplicateSettingsChange) -> DuplicateSettings:
        try:
            merged = (await store.settings()).merged(body)
        except ValueError as exc:  # pydantic's ValidationError included
            raise ApiError(422, "invalid_settings", _first_error(exc)) from exc
        await store.put(merged)
        apply(merged)  # this process at once (the next ticket it reads is judged by it); the others when they hear
        await announce()
        return merged

    return router


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first.get("msg", exc)).removeprefix("Value error, ")
    return str(exc)
