"""The admin API of routing: agents, their skills, capacity and presence."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from services.routing.domain import Agent, AgentProfile, Presence
from services.routing.rules import Rule
from services.routing.service import RoutingService
from services.routing.store import RoutingStore
from shared.http import ApiError, check_id


class PresenceRequest(BaseModel):
    status: Presence


def agent_view(agent: Agent) -> dict[str, Any]:
    data = agent.model_dump(mode="json")
    data["load"] = agent.load
    return data


def build_router(service: RoutingService, store: RoutingStore, auth) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["agents"], dependencies=[auth.agent])

    @router.put("/agents/{agent_id}", dependencies=[auth.admin], summary="Create or update an agent")
    async def put_agent(agent_id: str, profile: AgentProfile) -> dict[str, Any]:
        check_id(agent_id, "agent")
        return agent_view(await service.put_agent(agent_id, profile))

    @router.put("/agents/{agent_id}/presence", summary="Set an agent online, away or offline")
    async def put_presence(agent_id: str, body: PresenceRequest) -> dict[str, Any]:
        agent = await service.set_presence(agent_id, body.status)
        if agent is None:
            raise ApiError(404, "not_found", f"agent {agent_id} does not exist")
        return agent_view(agent)

    @router.put("/rules/{rule_id}", dependencies=[auth.admin], summary="Create or replace an automation rule")
    async def put_rule(rule_id: str, rule: Rule) -> dict[str, Any]:
        check_id(rule_id, "rule")
        await store.put_rule(rule_id, rule)
        return {"id": rule_id, **rule.model_dump(mode="json")}

    @router.get("/rules", summary="Every automation rule, in the order they run")
    async def list_rules() -> dict[str, Any]:
        rules = await store.all_rules()
        return {"items": [{"id": rid, **r.model_dump(mode="json")}
                          for rid, r in sorted(rules.items(), key=lambda x: (x[1].order, x[0]))]}

    @router.delete("/rules/{rule_id}", dependencies=[auth.admin], status_code=204, summary="Delete an automation rule")
    async def delete_rule(rule_id: str) -> None:
        if not await store.delete_rule(rule_id):
            raise ApiError(404, "not_found", f"rule {rule_id} does not exist")

    @router.get("/agents", summary="Every agent with skills, presence and current load")
    async def list_agents() -> dict[str, Any]:
        return {"items": [agent_view(a) for a in await store.all_agents()],
                "queue_length": await store.queue_length()}

    return router
