"""The admin endpoints for what is held about one customer: export it, erase it (services/tickets/
erasure.py does both). Admin only: an export is every word the customer ever wrote, an erasure
cannot be undone."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.tickets.erasure import Erasure, Unfinished
from shared.http import ApiError, Auth


def build_privacy_router(erasure: Erasure, auth: Auth) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["customers"], dependencies=[auth.admin])

    @router.get(
        "/customers/{customer_id}/export",
        summary="Everything held about a customer, as JSON",
        description="The profile, every identity, every ticket with its messages, notes and timeline, "
        "delivery records and the descriptions of kept files (GDPR article 15).",
    )
    async def export(customer_id: str) -> dict[str, Any]:
        held = await erasure.export(customer_id)
        if held is None:
            raise ApiError(404, "not_found", f"customer {customer_id} does not exist")
        return held

    @router.post(
        "/customers/{customer_id}/erase",
        status_code=202,
        summary="Erase everything held about a customer (and the profiles merged into it)",
        description="Every ticket of the customer, its messages, files and delivery records, and the "
        "customer's identities and profile are removed (GDPR article 17); SLA, routing and "
        "analytics drop their copies, analytics keeping anonymous counts. Answered once the "
        "tickets service has erased its part; files kept by ingest follow within moments. "
        "Event `deskstream.customer.erased`. A 503 left the work half done (files and some "
        "tickets gone, the profile not): ask again to finish it.",
    )
    async def erase(customer_id: str) -> dict[str, Any]:
        try:
            erased = await erasure.erase(customer_id, actor="admin")
        except Unfinished as exc:
            raise ApiError(503, "unavailable", f"the erasure did not finish ({exc}); ask again") from exc
        if erased is None:
            raise ApiError(404, "not_found", f"customer {customer_id} does not exist")
        return erased

    return router
