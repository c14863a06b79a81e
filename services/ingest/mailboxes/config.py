"""A mailbox as an admin configures it: the URL read into its parts, the password kept encrypted."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, Field, field_validator

from shared.credentials import Vault, sealing_secret

MAILBOX_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_AFTER = re.compile(r"seen|delete|move:.{1,200}")


class MailboxPut(BaseModel):
    """`PUT /v1/mailboxes/{mailbox_id}`."""

    url: str = Field(
        description="imap://user:pass@host:port/INBOX or imaps://… (user and password URL-encoded)", max_length=2000
    )
    poll_s: float = Field(30, ge=1, le=3600, description="seconds between polls when the server has no IDLE")
    after: str = Field("seen", description='what becomes of a filed mail: "seen", "move:<folder>" or "delete"')
    trusted_authserv_ids: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="authserv-ids whose Authentication-Results headers this mailbox's mail may prove its "
        "sender with (the retailer's own MX); none: every sender is a claim",
    )

    @field_validator("after")
    @classmethod
    def _after(cls, value: str) -> str:
        if not _AFTER.fullmatch(value):
            raise ValueError('after is "seen", "move:<folder>" or "delete"')
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        address_of(value)  # raises ValueError naming what is wrong
        return value


@dataclass(frozen=True)
class Address:
    """Where a mailbox is and who logs in: the URL's parts."""

    tls: bool
    host: str
    port: int
    user: str
    password: str
    folder: str

    def shown(self) -> str:
        """The URL without its password: what the API may show."""
        scheme = "imaps" if self.tls else "imap"
        return f"{scheme}://{quote(self.user, safe='')}@{self.host}:{self.port}/{quote(self.folder, safe='')}"


def address_of(url: str) -> Address:
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps"):
        raise ValueError("url: the scheme is imap:// or imaps://")
    if not parts.hostname or not parts.username:
        raise ValueError("url: needs user@host (imap://user:pass@host:port/INBOX)")
    try:
        port = parts.port or (993 if parts.scheme == "imaps" else 143)
    except ValueError:
        raise ValueError("url: the port is not a number from 1 to 65535") from None
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    return Address(
        tls=parts.scheme == "imaps",
        host=parts.hostname,
        port=port,
        user=unquote(parts.username),
        password=unquote(parts.password or ""),
        folder=folder,
    )


def mailbox_vault(settings: Any) -> Vault:
    """Mailbox passwords sealed under DESKSTREAM_SECRET_KEY (shared/credentials.py), so a copy of the
    database alone does not open the retailer's mailbox."""
    return Vault(sealing_secret(settings), "deskstream mailbox passwords")
