"""The admin API of routing: agents (skills, capacity, presence, working hours), automation
rules, the knowledge base and SLA escalations."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from services.routing.domain import Agent, AgentProfile, Presence
from services.routing.escalation import Escalation
from services.routing.kb import Article, search
from services.routing.rules import Rule
from services.routing.store import RoutingStore
from shared import topics
from shared.credentials import Principal
from shared.events import AgentUpdated, EventType, PublishRoutingView, utcnow
from shared.http import ApiError, Auth, acting, check_id, principal
from shared.kafka import event
from shared.runtime import Runtime


class PresenceRequest(BaseModel):
    status: Presence


def agent_view(agent: Agent) -> dict[str, Any]:
    data = agent.model_dump(mode="json")
    data["load"] = agent.load
    return data


def build_router(store: RoutingStore, rt: Runtime, auth: Auth) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["agents"], dependencies=[auth.agent])

    async def tell_dispatcher(type_: str, request: AgentUpdated | PublishRoutingView) -> None:
        await rt.send(
            [
                event(
                    topics.ROUTING_DISPATCH,
                    None,
                    type_,
                    request,
                    source=rt.source,
                    subject=None,
                    id_=request.request_id,
                    time=utcnow(),
                )
            ]
        )

    async def fresh_view(timeout_s: float = 3.0) -> None:
        """Ask the dispatcher to write what it holds now, and wait until it has (or `timeout_s`)."""
        token = uuid.uuid4().hex
        await tell_dispatcher(EventType.PUBLISH_ROUTING_VIEW, PublishRoutingView(request_id=token))
        for _ in range(int(timeout_s / 0.02)):
            if (await store.read_view()).get("token") == token:
                return
            await asyncio.sleep(0.02)

    async def agent_now(agent_id: str) -> Agent:
        await fresh_view()
        agents, _ = await store.agents_with_load()
        agent = next((a for a in agents if a.id == agent_id), None)
        if agent is None:  # deleted meanwhile
            raise ApiError(404, "not_found", f"agent {agent_id} does not exist")
        return agent

    @router.put("/agents/{agent_id}", dependencies=[auth.admin], summary="Create or update an agent")
    async def put_agent(agent_id: str, profile: AgentProfile) -> dict[str, Any]:
        check_id(agent_id, "agent")
        await store.upsert_agent(agent_id, profile, utcnow())
        await tell_dispatcher(EventType.AGENT_UPDATED, AgentUpdated(request_id=uuid.uuid4().hex, agent_id=agent_id))
        return agent_view(await agent_now(agent_id))

    @router.put(
        "/agents/{agent_id}/presence",
        summary="Set an agent online, away or offline",
        description="A personal agent token sets only its own agent's presence (403 otherwise).",
    )
    async def put_presence(agent_id: str, body: PresenceRequest, who: Principal = Depends(principal)) -> dict[str, Any]:
        acting(who, agent_id, default=agent_id)
        if not await store.set_presence(agent_id, body.status, utcnow()):
            raise ApiError(404, "not_found", f"agent {agent_id} does not exist")
        await tell_dispatcher(EventType.AGENT_UPDATED, AgentUpdated(request_id=uuid.uuid4().hex, agent_id=agent_id))
        return agent_view(await agent_now(agent_id))

    @router.put("/rules/{rule_id}", dependencies=[auth.admin], summary="Create or replace an automation rule")
    async def put_rule(rule_id: str, rule: Rule) -> dict[str, Any]:
        check_id(rule_id, "rule")
        await store.put_rule(rule_id, rule)
        await rt.announce_settings("rules")
        return {"id": rule_id, **rule.model_dump(mode="json")}

    @router.get("/rules", summary="Every automation rule, in the order they run")
    async def list_rules() -> dict[str, Any]:
        rules = await store.all_rules()
        return {
            "items": [
                {"id": rid, **r.model_dump(mode="json")}
                for rid, r in sorted(rules.items(), key=lambda x: (x[1].order, x[0]))
            ]
        }

    @router.delete("/rules/{rule_id}", dependencies=[auth.admin], status_code=204, summary="Delete an automation rule")
    async def delete_rule(rule_id: str) -> None:
        deleted = await store.delete_rule(rule_id)
        await rt.announce_settings("rules")
        if not deleted:
            raise ApiError(404, "not_found", f"rule {rule_id} does not exist")

    @router.put(
        "/kb/articles/{article_id}", dependencies=[auth.admin], summary="Create or replace a knowledge-base article"
    )
    async def put_article(article_id: str, article: Article) -> dict[str, Any]:
        check_id(article_id, "article")
        await store.put_article(article_id, article, utcnow())
        await rt.announce_settings("articles")
        return {"id": article_id, **article.model_dump(mode="json")}

    @router.get("/kb/articles/{article_id}", summary="One knowledge-base article")
    async def get_article(article_id: str) -> dict[str, Any]:
        article = await store.get_article(article_id)
        if article is None:
            raise ApiError(404, "not_found", f"article {article_id} does not exist")
        return {"id": article_id, **article.model_dump(mode="json")}

    @router.delete(
        "/kb/articles/{article_id}",
        dependencies=[auth.admin],
        status_code=204,
        summary="Delete a knowledge-base article",
    )
    async def delete_article(article_id: str) -> None:
        deleted = await store.delete_article(article_id)
        await rt.announce_settings("articles")
        if not deleted:
            raise ApiError(404, "not_found", f"article {article_id} does not exist")

    @router.get("/kb/search", summary="Articles that answer a question, best first, with a score from 0 to 1")
    async def search_articles(
        q: str = Query(min_length=1, max_length=5000),
        language: str | None = Query(None, max_length=10),
        limit: int = Query(5, ge=1, le=50),
    ) -> dict[str, Any]:
        hits = search(await store.all_articles(language), q, language, limit)
        return {"items": [h.model_dump() for h in hits]}

    @router.put(
        "/escalations/{escalation_id}",
        dependencies=[auth.admin],
        summary="Create or replace an escalation on SLA warnings or breaches",
    )
    async def put_escalation(escalation_id: str, escalation: Escalation) -> dict[str, Any]:
        check_id(escalation_id, "escalation")
        await store.put_escalation(escalation_id, escalation)
        await rt.announce_settings("escalations")
        return {"id": escalation_id, **escalation.model_dump(mode="json")}

    @router.get("/escalations", summary="Every escalation, in the order they run")
    async def list_escalations() -> dict[str, Any]:
        escalations = await store.all_escalations()
        return {
            "items": [
                {"id": eid, **e.model_dump(mode="json")}
                for eid, e in sorted(escalations.items(), key=lambda x: (x[1].order, x[0]))
            ]
        }

    @router.delete(
        "/escalations/{escalation_id}", dependencies=[auth.admin], status_code=204, summary="Delete an escalation"
    )
    async def delete_escalation(escalation_id: str) -> None:
        deleted = await store.delete_escalation(escalation_id)
        await rt.announce_settings("escalations")
        if not deleted:
            raise ApiError(404, "not_found", f"escalation {escalation_id} does not exist")

    @router.get("/queue", summary="Tickets waiting for an agent, in the order they will be offered")
    async def list_queue(limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        await fresh_view()
        view = await store.read_view()
        return {"items": (view.get("queue") or [])[:limit], "length": view.get("queue_length", 0)}

    @router.get("/agents", summary="Every agent with skills, presence and current load")
    async def list_agents() -> dict[str, Any]:
        await fresh_view()
        agents, view = await store.agents_with_load()
        return {"items": [agent_view(a) for a in agents], "queue_length": view.get("queue_length", 0)}

    return router
