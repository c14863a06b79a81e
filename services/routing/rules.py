"""Automation rules: admin-defined data, evaluated in order on each new ticket. Pure.

A rule's conditions all have to hold (a list means "any of these"); its actions set the
priority, add tags, require skills (`name` or `name:minimum level`) or a team, answer from
the knowledge base, or mark the ticket as spam. Rules run in
ascending `order`; a rule with `stop` ends the evaluation."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator

from services.routing.domain import check_skills


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


class Conditions(BaseModel):
    channel: list[str] | None = Field(None, description="any of these channels")
    language: list[str] | None = Field(None, description="any of these languages")
    text_any: list[str] | None = Field(None, description="any of these words or phrases (case-insensitive)")
    tags_all: list[str] | None = Field(None, description="all of these tags")
    customer: list[str] | None = Field(None, description="any of these customer ids")
    priority: list[str] | None = Field(None, description="any of these priorities")


class KbAnswer(BaseModel):
    """Answer the customer with the knowledge-base article that best matches their message."""

    min_score: float = Field(
        0.6, ge=0.0, le=1.0, description="send the article only when its search score (0-1) is at least this"
    )


class Actions(BaseModel):
    priority: Priority | None = None
    add_tags: list[str] = Field(default_factory=list, max_length=20)
    require_skills: list[str] = Field(
        default_factory=list, max_length=20, description="`name` or `name:level`: the agent needs at least that level"
    )
    team: str | None = None
    answer_from_kb: KbAnswer | None = None
    mark_spam: bool = False

    @field_validator("require_skills")
    @classmethod
    def _levels_in_range(cls, skills: list[str]) -> list[str]:
        return check_skills(skills)


class Rule(BaseModel):
    """`PUT /v1/rules/{rule_id}`."""

    name: str = Field(min_length=1, max_length=200)
    order: int = Field(1000, ge=-1_000_000, le=1_000_000)  # stored: it must fit a 64-bit integer
    enabled: bool = True
    when: Conditions = Field(default_factory=Conditions)
    then: Actions
    stop: bool = False


class Facts(BaseModel):
    """What the rules look at."""

    channel: str
    language: str | None = None
    text: str = ""
    tags: list[str] = Field(default_factory=list)
    customer_id: str | None = None
    priority: str = "normal"


class Outcome(BaseModel):
    fired: list[str] = Field(default_factory=list)  # rule names, in order
    priority: Priority | None = None
    add_tags: list[str] = Field(default_factory=list)
    skills: list[str] = Field(default_factory=list)
    team: str | None = None
    kb_min_score: float | None = None  # set when a rule asked for a knowledge-base answer
    spam: bool = False


def _mentions(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase.casefold())}(?!\w)", text.casefold()) is not None


def holds(when: Conditions, facts: Facts) -> bool:
    return (
        (when.channel is None or facts.channel in when.channel)
        and (when.language is None or facts.language in when.language)
        and (when.text_any is None or any(_mentions(facts.text, p) for p in when.text_any))
        and (when.tags_all is None or all(t in facts.tags for t in when.tags_all))
        and (when.customer is None or facts.customer_id in when.customer)
        and (when.priority is None or facts.priority in when.priority)
    )


def evaluate(rules: dict[str, Rule], facts: Facts) -> Outcome:
    outcome = Outcome()
    for _, _rule_id, rule in sorted((r.order, rid, r) for rid, r in rules.items()):
        if not rule.enabled or not holds(rule.when, facts):
            continue
        outcome.fired.append(rule.name)
        act = rule.then
        if act.priority:
            outcome.priority = act.priority
            facts = facts.model_copy(update={"priority": act.priority.value})
        for tag in act.add_tags:
            if tag not in outcome.add_tags and tag not in facts.tags:
                outcome.add_tags.append(tag)
        facts = facts.model_copy(update={"tags": [*facts.tags, *act.add_tags]})
        outcome.skills += [s for s in act.require_skills if s not in outcome.skills]
        outcome.team = act.team or outcome.team
        if act.answer_from_kb:
            outcome.kb_min_score = act.answer_from_kb.min_score
        outcome.spam = outcome.spam or act.mark_spam
        if rule.stop:
            break
    return outcome
