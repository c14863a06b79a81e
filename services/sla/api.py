"""The SLA HTTP API: policies, business-hours calendars and each ticket's clocks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.sla.calendar import HORIZON_DAYS, Calendar, CalendarError, add_business_seconds
from services.sla.domain import Policy
from services.sla.service import SlaService
from services.sla.store import SlaStore
from shared.http import ApiError, Auth, check_id

START_EXAMPLE = "2026-03-27T16:00:00+03:00"


def parse_start(text: str) -> datetime:
    """An ISO 8601 moment with its UTC offset: without one, "09:00" could be any of 24 moments."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        # an unescaped '+' in a query string arrives as a space, the usual cause of this error
        raise ApiError(
            422,
            "invalid_start",
            f"start {text!r} is not an ISO 8601 date and time, e.g. {START_EXAMPLE} (write '+' as %2B in a URL)",
        ) from None
    if moment.tzinfo is None:
        raise ApiError(
            422, "invalid_start", f"start {text!r} has no time zone: add a UTC offset or Z, e.g. {START_EXAMPLE}"
        )
    return moment


async def _nobody(what: str) -> None:
    return None


def build_router(
    service: SlaService, store: SlaStore, auth: Auth, announce: Callable[[str], Awaitable[None]] = _nobody
) -> APIRouter:
    """`announce(what)` tells the other SLA processes that settings changed (Runtime.announce_settings)."""
    router = APIRouter(prefix="/v1", tags=["sla"], dependencies=[auth.agent])

    @router.put("/policies/{policy_id}", dependencies=[auth.admin], summary="Create or replace an SLA policy")
    async def put_policy(policy_id: str, policy: Policy) -> dict[str, Any]:
        check_id(policy_id, "policy")
        await store.put_policy(policy_id, policy)
        await announce("policies")
        return {"id": policy_id, **policy.model_dump()}

    @router.get("/policies", summary="Every SLA policy")
    async def list_policies() -> dict[str, Any]:
        policies = await store.all_policies()
        return {
            "items": [
                {"id": pid, **p.model_dump()} for pid, p in sorted(policies.items(), key=lambda x: (x[1].order, x[0]))
            ]
        }

    async def calendar_or_404(calendar_id: str) -> Calendar:
        calendar = await store.get_calendar(calendar_id)
        if calendar is None:
            raise ApiError(404, "not_found", f"calendar {calendar_id} does not exist")
        return calendar

    @router.put(
        "/calendars/{calendar_id}", dependencies=[auth.admin], summary="Create or replace a business-hours calendar"
    )
    async def put_calendar(calendar_id: str, calendar: Calendar) -> dict[str, Any]:
        check_id(calendar_id, "calendar")
        await store.put_calendar(calendar_id, calendar)
        await announce("calendars")
        return {"id": calendar_id, **calendar.model_dump(mode="json")}

    @router.get("/calendars/{calendar_id}", summary="A business-hours calendar")
    async def get_calendar(calendar_id: str) -> dict[str, Any]:
        return {"id": calendar_id, **(await calendar_or_404(calendar_id)).model_dump(mode="json")}

    @router.get(
        "/calendars/{calendar_id}/due",
        summary="The moment `seconds` of business time after `start`, in the calendar's time zone",
    )
    async def due(
        calendar_id: str,
        start: Annotated[str, Query(description=f"ISO 8601 with a UTC offset or Z, e.g. {START_EXAMPLE}")],
        seconds: Annotated[int, Query(ge=0, le=HORIZON_DAYS * 86_400, description="business seconds to count")],
    ) -> dict[str, str]:
        calendar = await calendar_or_404(calendar_id)
        moment = parse_start(start)
        try:
            due_at = add_business_seconds(calendar, moment, seconds)
        except CalendarError as error:
            raise ApiError(422, "beyond_horizon", str(error)) from None
        return {"due": due_at.astimezone(calendar.zone).isoformat()}

    @router.get("/tickets/{ticket_id}/sla", summary="Each SLA target of a ticket with due time and state")
    async def ticket_sla(ticket_id: str) -> dict[str, Any]:
        clocks = await service.ticket_clocks(ticket_id)
        if not clocks:
            raise ApiError(404, "not_found", f"no SLA clock for ticket {ticket_id} (yet)")
        return {"ticket_id": ticket_id, "targets": await service.view(clocks)}

    return router
