"""Personal agent tokens (admin): created here, checked by every service (shared/credentials.py).

A token is shown once, when it is created; only its hash is kept. Revoking it refuses it at once in
every service (they look it up on each agent request)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from shared.credentials import AgentTokens
from shared.http import ApiError, Auth, check_id


class TokenRequest(BaseModel):
    label: str | None = Field(None, max_length=200, description="what the token is for (a device, an integration)")


def build_credentials_router(auth: Auth) -> APIRouter:
    router = APIRouter(prefix="/v1/agents", tags=["credentials"], dependencies=[auth.admin])

    def tokens() -> AgentTokens:
        if auth.tokens is None:
            raise ApiError(503, "unavailable", "the credentials store is not configured")
        return auth.tokens

    @router.post(
        "/{agent_id}/tokens",
        status_code=201,
        summary="A personal token for an agent: shown once (`token`), stored only as a hash",
        description="With it, the acting agent is this agent: replies, notes and every timeline entry "
        "are recorded as theirs, a body naming another agent is refused (403), and they set "
        "only their own presence.",
    )
    async def create_token(agent_id: str, body: TokenRequest | None = None) -> dict[str, Any]:
        check_id(agent_id, "agent")
        made = await tokens().create(agent_id, label=body.label if body else None)
        return {
            "token_id": made["token_id"],
            "token": made["token"],
            "agent_id": agent_id,
            "label": made["label"],
            "created_at": made["created_at"],
        }

    @router.get("/{agent_id}/tokens", summary="The agent's live tokens (ids and labels; never the tokens)")
    async def list_tokens(agent_id: str) -> dict[str, Any]:
        return {"agent_id": agent_id, "tokens": await tokens().of_agent(agent_id)}

    @router.delete(
        "/{agent_id}/tokens/{token_id}", status_code=204, summary="Revoke a token: refused (401) everywhere from now on"
    )
    async def revoke_token(agent_id: str, token_id: str) -> None:
        if not await tokens().revoke(agent_id, token_id):
            raise ApiError(404, "not_found", f"agent {agent_id} has no token {token_id}")

    return router
