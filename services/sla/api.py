"""The SLA HTTP API: policies and each ticket's clocks."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.sla.domain import Policy
from services.sla.service import SlaService
from services.sla.store import SlaStore
from shared.http import ApiError


def build_router(service: SlaService, store: SlaStore, auth) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["sla"], dependencies=[auth])

    @router.put("/policies/{policy_id}", summary="Create or replace an SLA policy")
    async def put_policy(policy_id: str, policy: Policy) -> dict[str, Any]:
        if not policy_id or len(policy_id) > 200:
            raise ApiError(400, "invalid_policy_id", "policy ids are 1 to 200 characters")
        await store.put_policy(policy_id, policy)
        return {"id": policy_id, **policy.model_dump()}

    @router.get("/policies", summary="Every SLA policy")
    async def list_policies() -> dict[str, Any]:
        policies = await store.all_policies()
        return {"items": [{"id": pid, **p.model_dump()} for pid, p in sorted(policies.items(),
                                                                               key=lambda x: (x[1].order, x[0]))]}

    @router.get("/tickets/{ticket_id}/sla", summary="Each SLA target of a ticket with due time and state")
    async def ticket_sla(ticket_id: str) -> dict[str, Any]:
        clocks = await store.clocks_of(ticket_id)
        if not clocks:
            raise ApiError(404, "not_found", f"no SLA clock for ticket {ticket_id} (yet)")
        return {"ticket_id": ticket_id, "targets": service.view(clocks)}

    return router
