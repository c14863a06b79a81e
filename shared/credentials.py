"""Who may call what: the start-up check of the API token, per-agent tokens and signed chat sessions.

- `DESKSTREAM_API_TOKEN` (admin) must be at least 16 characters; a service refuses to start without
  one unless `DESKSTREAM_INSECURE_DEV=1` (then agent and admin endpoints are open, and it says so
  every minute).
- Per-agent tokens (`dsa_<token id>_<secret>`) are created by an admin through the tickets API and kept
  in `agent_tokens` as a SHA-256 hash only; every service checks a presented token against that
  collection (one read by `_id` per agent request — never on a message path), so a revoked token is
  refused at once everywhere.
- A chat token binds a chat session to the visitor that opened it: an HMAC over both, keyed by
  `DESKSTREAM_CHAT_SECRET` (or, when unset, a key derived from the API token). It carries the visitor
  id, so a widget needs nothing else to read its session.
- Secrets deskstream must use again later (IMAP mailbox passwords, webhook signing secrets) are kept
  sealed (`Vault`: Fernet, AES with an HMAC) under a key derived from `DESKSTREAM_SECRET_KEY`, so a
  copy of the database alone opens nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MIN_TOKEN_LENGTH = 16
TOKEN_PREFIX = "dsa_"


class InsecureSettings(SystemExit):
    """The service must not start as configured; the message says what to set."""


def secret_of(value: Any) -> str:
    """A `SecretStr` (or plain string, or None) as text; empty when unset."""
    if value is None:
        return ""
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def problems(settings: Any) -> list[str]:
    """What makes these settings run open (empty when the tokens are sound)."""
    admin = secret_of(getattr(settings, "api_token", None))
    agent = secret_of(getattr(settings, "agent_token", None))
    found = []
    if not admin:
        found.append("DESKSTREAM_API_TOKEN is not set (or empty)")
    elif len(admin) < MIN_TOKEN_LENGTH:
        found.append(f"DESKSTREAM_API_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters")
    if agent and len(agent) < MIN_TOKEN_LENGTH:
        found.append(f"DESKSTREAM_AGENT_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters")
    return found


def check_start(settings: Any) -> None:
    """Refuse to run open: raises `InsecureSettings` (the process exits with its message) unless the
    tokens are sound or DESKSTREAM_INSECURE_DEV=1."""
    found = problems(settings)
    if found and not getattr(settings, "insecure_dev", False):
        raise InsecureSettings(
            "deskstream: refusing to start: " + "; ".join(found) + ". Set a random token of at least "
            f"{MIN_TOKEN_LENGTH} characters (e.g. `export DESKSTREAM_API_TOKEN=$(python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')`), or DESKSTREAM_INSECURE_DEV=1 to run with the agent and admin "
            "endpoints open on a development machine."
        )


# ---------------------------------------------------------------- per-agent tokens


@dataclass(frozen=True)
class Principal:
    """Who a request acts as. `agent_id` is set for a personal agent token: then the acting agent is
    that agent, whatever the body says."""

    role: str  # "admin" | "agent"
    agent_id: str | None = None
    token_id: str | None = None

    @property
    def personal(self) -> bool:
        return self.agent_id is not None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_agent_token() -> tuple[str, str]:
    """(token id, token): the token is shown once; only its hash is kept."""
    token_id = secrets.token_hex(8)
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def token_id_of(token: str) -> str | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, rest = token[len(TOKEN_PREFIX) :].partition("_")
    return token_id if sep and rest and len(token_id) == 16 else None


class AgentTokens:
    """`agent_tokens`: one document per live token, `_id` = token id, with the token's hash and agent."""

    def __init__(self, mongo: Any) -> None:
        self.collection = mongo.collection("agent_tokens")

    async def create(self, agent_id: str, *, label: str | None = None) -> dict[str, Any]:
        token_id, token = new_agent_token()
        doc = {
            "_id": token_id,
            "agent_id": agent_id,
            "hash": hash_token(token),
            "label": label,
            "created_at": datetime.now(UTC),
        }
        await self.collection.insert_one(doc)
        return {
            "token_id": token_id,
            "token": token,
            "agent_id": agent_id,
            "label": label,
            "created_at": doc["created_at"],
        }

    async def revoke(self, agent_id: str, token_id: str) -> bool:
        result = await self.collection.delete_one({"_id": token_id, "agent_id": agent_id})
        return result.deleted_count > 0

    async def of_agent(self, agent_id: str) -> list[dict[str, Any]]:
        return [
            {"token_id": d["_id"], "label": d.get("label"), "created_at": d.get("created_at")}
            async for d in self.collection.find({"agent_id": agent_id}, {"hash": 0})
        ]

    async def check(self, token: str) -> Principal | None:
        token_id = token_id_of(token)
        if token_id is None:
            return None
        doc = await self.collection.find_one({"_id": token_id})
        if doc is None or not hmac.compare_digest(doc.get("hash", ""), hash_token(token)):
            return None
        return Principal("agent", agent_id=doc["agent_id"], token_id=token_id)


# ---------------------------------------------------------------- chat sessions

CHAT_TOKEN_PREFIX = "cs1."


def chat_key(settings: Any) -> bytes:
    """`DESKSTREAM_CHAT_SECRET`, or a key derived from the API token (stable across processes and
    restarts; changing the API token then ends every chat token, which a widget renews by starting a
    new session)."""
    explicit = secret_of(getattr(settings, "chat_secret", None))
    return explicit.encode() if explicit else _from_api_token(settings, b"deskstream chat sessions")


def csat_key(settings: Any) -> bytes:
    """The key customer confirmation links are signed with (services/tickets/csat): derived from the chat
    key, so every tickets process agrees on it and `DESKSTREAM_CHAT_SECRET` rotates both."""
    return hmac.new(chat_key(settings), b"deskstream customer confirmation", hashlib.sha256).digest()


def _from_api_token(settings: Any, label: bytes) -> bytes:
    """A key every process of the deployment derives alike when its own setting is unset."""
    base = secret_of(getattr(settings, "api_token", None)) or "insecure-development"
    return hmac.new(base.encode(), label, hashlib.sha256).digest()


class ChatTokens:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def _mac(self, session_id: str, visitor_id: str) -> str:
        digest = hmac.new(self.key, f"{session_id}\x00{visitor_id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, session_id: str, visitor_id: str) -> str:
        visitor = base64.urlsafe_b64encode(visitor_id.encode()).decode().rstrip("=")
        return f"{CHAT_TOKEN_PREFIX}{visitor}.{self._mac(session_id, visitor_id)}"

    def visitor_of(self, session_id: str, token: str | None) -> str | None:
        """The visitor a token was issued to for this session; None when it is not a valid one."""
        if not token or not token.startswith(CHAT_TOKEN_PREFIX) or len(token) > 1000:
            return None
        visitor_b64, _, mac = token[len(CHAT_TOKEN_PREFIX) :].partition(".")
        try:
            visitor_id = base64.urlsafe_b64decode(visitor_b64 + "=" * (-len(visitor_b64) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return visitor_id if hmac.compare_digest(mac, self._mac(session_id, visitor_id)) else None


# ---------------------------------------------------------------- secrets kept sealed


def sealing_secret(settings: Any) -> str:
    """DESKSTREAM_SECRET_KEY; without it (DESKSTREAM_INSECURE_DEV, unit tests), one derived from the API
    token, as the chat key is, so every process still agrees on it."""
    explicit = secret_of(getattr(settings, "secret_key", None))
    return explicit or _from_api_token(settings, b"deskstream mailbox passwords").hex()


class Vault:
    """Seals a secret for the database and opens it again; `purpose` keys each use apart."""

    def __init__(self, secret: str, purpose: str) -> None:
        from cryptography.fernet import Fernet

        key = hashlib.sha256(purpose.encode() + b"\x00" + secret.encode()).digest()
        self.fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, value: str) -> str:
        return self.fernet.encrypt(value.encode()).decode()

    def open(self, sealed: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self.fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ValueError("sealed with another DESKSTREAM_SECRET_KEY") from None
