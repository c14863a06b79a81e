"""Chat sessions belong to the visitor who opened them (CONTRACT v2, "Chat").

The first accepted message of a session claims it for its visitor (`ingest_blobs`, sharing the group
commit of mails and files) and is answered with a chat token (shared/credentials.py: an HMAC over the session and
the visitor). Every later message carries that token and is checked without a database read. A message
without a token for a session someone already claimed is refused (403) — unless it is the claiming
message itself delivered again (same visitor and message id), which gets the same token back."""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from services.ingest.domain import Blob
from shared.credentials import ChatTokens


class Forbidden(Exception):
    """The message may not join this session (HTTP 403)."""


class Claims(Protocol):
    async def claim(self, session_id: str, owner: str) -> str | None:
        """Claim the session for `owner`; returns None when claimed now, else the existing owner."""


class StoredClaims:
    """Claims kept beside the files and mails ingest stores (`ingest_blobs`, key `chat-session:<id>`),
    through the same group commit: a new session's claim shares an `insert_many` with whatever else
    arrives at the same time instead of costing FerretDB an insert of its own (issue 15). A claim
    found kept already costs one read."""

    PREFIX = "chat-session:"

    def __init__(self, blobs: Any) -> None:
        self.blobs = blobs  # a BlobStore, or the BlobBatcher in front of it

    async def claim(self, session_id: str, owner: str) -> str | None:
        blob = Blob(data=owner.encode(), media_type="application/vnd.deskstream.claim", key=self.PREFIX + session_id)
        if blob.id not in await self.blobs.put_many([blob]):
            return None
        existing = await self.blobs.get(blob.id)
        return existing.decode() if existing is not None else owner


class MemoryClaims:
    """Claims held in this process only: for an ingest whose service is replaced (HTTP-layer tests)."""

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}

    async def claim(self, session_id: str, owner: str) -> str | None:
        existing = self.owners.setdefault(session_id, owner)
        return None if existing == owner else existing


def _owner(visitor_id: str, message_id: str) -> str:
    """Who claimed a session, by the claiming message (so its redelivery is recognised)."""
    return hashlib.sha256(f"{visitor_id}\x00{message_id}".encode()).hexdigest()


class ChatSessions:
    def __init__(self, tokens: ChatTokens, claims: Claims) -> None:
        self.tokens, self.claims = tokens, claims

    async def admit(self, session_id: str, visitor_id: str, message_id: str, token: str | None) -> str:
        """The session's token for this message's visitor, or `Forbidden`."""
        if token is not None:
            visitor = self.tokens.visitor_of(session_id, token)
            if visitor is None:
                raise Forbidden("chat_token is not valid for this session")
            if visitor != visitor_id:
                raise Forbidden("this chat session belongs to another visitor")
            return token
        existing = await self.claims.claim(session_id, _owner(visitor_id, message_id))
        if existing is not None and existing != _owner(visitor_id, message_id):
            raise Forbidden("this chat session is open already: later messages carry its chat_token")
        return self.tokens.issue(session_id, visitor_id)
