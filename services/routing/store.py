"""The collections routing owns: agents (what admins set, and presence), automation rules, the
knowledge base, escalations, and `routing_view` — who carries which ticket and what waits, as the
dispatcher last wrote it for the API to read.

Who carries which ticket is not stored here per assignment: it is the dispatcher's state
(services/routing/dispatch.py), durable in its changelog topic. The configuration is read rarely
and kept a few seconds (shared/cache.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.routing.domain import Agent, AgentProfile, Presence
from services.routing.escalation import Escalation
from services.routing.kb import Article
from services.routing.rules import Rule
from shared.cache import Cached
from shared.mongo import ASCENDING, loaded_week, stored_week
from shared.storage import Storage

VIEW_ID = "current"


class RoutingStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.agents = storage.collection("routing_agents")
        self.rules = storage.collection("routing_rules")
        self.articles = storage.collection("routing_kb_articles")
        self.escalations = storage.collection("routing_escalations")
        self.view = storage.collection("routing_view")
        self._rules = Cached(self._load_rules)
        self._escalations = Cached(self._load_escalations)
        self._articles: dict[str | None, Cached[dict[str, Article]]] = {}

    # ------------------------------------------------------------ agents
    async def upsert_agent(self, agent_id: str, profile: AgentProfile, now: datetime) -> None:
        await self.agents.update_one(
            {"_id": agent_id},
            {
                "$set": {**stored_profile(profile), "updated_at": now},
                "$setOnInsert": {"presence": Presence.offline.value, "created_at": now},
            },
            upsert=True,
        )

    async def set_presence(self, agent_id: str, presence: Presence, now: datetime) -> bool:
        current = await self.agents.find_one({"_id": agent_id}, {"presence": 1})
        if current is None:
            return False
        change: dict[str, Any] = {"presence": presence.value, "updated_at": now}
        if presence == Presence.offline and current.get("presence") != Presence.offline.value:
            change["offline_since"] = now
        elif presence != Presence.offline:
            change["offline_since"] = None
        await self.agents.update_one({"_id": agent_id}, {"$set": change})
        return True

    async def agent_doc(self, agent_id: str) -> dict[str, Any] | None:
        return await self.agents.find_one({"_id": agent_id})

    async def agent_docs(self) -> list[dict[str, Any]]:
        return [d async for d in self.agents.find({}).sort([("_id", ASCENDING)])]

    # ------------------------------------------------------------ the dispatcher's view
    async def write_view(self, view: dict[str, Any]) -> None:
        await self.view.replace_one({"_id": VIEW_ID}, {"_id": VIEW_ID, **view}, upsert=True)

    async def read_view(self) -> dict[str, Any]:
        return await self.view.find_one({"_id": VIEW_ID}) or {}

    async def agents_with_load(self) -> tuple[list[Agent], dict[str, Any]]:
        """Every agent with the tickets the dispatcher last said they carry."""
        view = await self.read_view()
        held: dict[str, list[str]] = view.get("agents") or {}
        return [to_agent(d, held.get(d["_id"], [])) for d in await self.agent_docs()], view

    # ------------------------------------------------------------ automation rules
    async def put_rule(self, rule_id: str, rule: Rule) -> None:
        await self.rules.replace_one({"_id": rule_id}, {"_id": rule_id, **rule.model_dump(mode="json")}, upsert=True)
        self._rules.invalidate()

    async def delete_rule(self, rule_id: str) -> bool:
        deleted = (await self.rules.delete_one({"_id": rule_id})).deleted_count > 0
        self._rules.invalidate()
        return deleted

    async def all_rules(self) -> dict[str, Rule]:
        """Every rule; read for every new ticket, so kept a few seconds."""
        return dict(await self._rules.get())

    async def _load_rules(self) -> dict[str, Rule]:
        return {d["_id"]: Rule.model_validate(d) async for d in self.rules.find({})}

    # ------------------------------------------------------------ knowledge base
    async def put_article(self, article_id: str, article: Article, now: datetime) -> None:
        await self.articles.replace_one(
            {"_id": article_id}, {"_id": article_id, **article.model_dump(), "updated_at": now}, upsert=True
        )
        self._articles.clear()

    async def get_article(self, article_id: str) -> Article | None:
        doc = await self.articles.find_one({"_id": article_id})
        return Article.model_validate(doc) if doc else None

    async def delete_article(self, article_id: str) -> bool:
        deleted = (await self.articles.delete_one({"_id": article_id})).deleted_count > 0
        self._articles.clear()
        return deleted

    async def all_articles(self, language: str | None = None) -> dict[str, Article]:
        """The articles (of one language); asked for new tickets that rules send to the knowledge base."""
        cached = self._articles.get(language)
        if cached is None:
            cached = self._articles[language] = Cached(lambda: self._load_articles(language))
        return dict(await cached.get())

    async def _load_articles(self, language: str | None) -> dict[str, Article]:
        query = {"language": language} if language else {}
        return {d["_id"]: Article.model_validate(d) async for d in self.articles.find(query)}

    # ------------------------------------------------------------ escalations
    async def put_escalation(self, escalation_id: str, escalation: Escalation) -> None:
        await self.escalations.replace_one(
            {"_id": escalation_id}, {"_id": escalation_id, **escalation.model_dump(mode="json")}, upsert=True
        )
        self._escalations.invalidate()

    async def delete_escalation(self, escalation_id: str) -> bool:
        deleted = (await self.escalations.delete_one({"_id": escalation_id})).deleted_count > 0
        self._escalations.invalidate()
        return deleted

    SETTINGS = ("rules", "escalations", "articles")

    def drop(self, what: str) -> None:
        """Forget the cached `what` (changed through another routing process)."""
        if what == "rules":
            self._rules.invalidate()
        elif what == "escalations":
            self._escalations.invalidate()
        elif what == "articles":
            self._articles.clear()

    async def all_escalations(self) -> dict[str, Escalation]:
        return dict(await self._escalations.get())

    async def _load_escalations(self) -> dict[str, Escalation]:
        return {d["_id"]: Escalation.model_validate(d) async for d in self.escalations.find({})}


def stored_profile(profile: AgentProfile) -> dict[str, Any]:
    doc = profile.model_dump()
    if doc["working_hours"]:
        doc["working_hours"]["hours"] = stored_week(doc["working_hours"]["hours"])
    return doc


def to_agent(doc: dict[str, Any], tickets: list[str] | None = None) -> Agent:
    hours = doc.get("working_hours")
    if hours:
        hours = {**hours, "hours": loaded_week(hours.get("hours") or {})}
    return Agent.model_validate({**doc, "id": doc["_id"], "tickets": sorted(tickets or []), "working_hours": hours})
