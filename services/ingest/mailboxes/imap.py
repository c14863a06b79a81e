"""The IMAP conversation ingest needs, over aioimaplib: select, new UIDs, fetch, mark, IDLE.

Every command goes by UID (stable within a UIDVALIDITY), never by sequence number, and mails are
fetched with BODY.PEEK[] so that fetching alone marks nothing: a mail is marked only after Kafka
acknowledged it (see poller.py)."""

from __future__ import annotations

import asyncio
import re
import ssl
import time

import aioimaplib

from services.ingest.mailboxes.config import Address

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
TIMEOUT_S = 30.0


class ImapError(Exception):
    """The server said no, or went away; the mailbox's `last_error` shows it."""


def _ok(response: aioimaplib.Response, what: str) -> aioimaplib.Response:
    if response.result != "OK":
        text = b" ".join(line for line in response.lines if isinstance(line, bytes))[:300]
        raise ImapError(f"{what}: {response.result} {text.decode(errors='replace')}")
    return response


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapSession:
    """One logged-in connection to a mailbox's folder."""

    def __init__(self, address: Address, *, tls_context: ssl.SSLContext | None = None) -> None:
        self.address = address
        self.tls_context = tls_context
        self.client: aioimaplib.IMAP4 | None = None

    async def __aenter__(self) -> ImapSession:
        a = self.address
        if a.tls:
            self.client = aioimaplib.IMAP4_SSL(
                a.host, a.port, timeout=TIMEOUT_S, ssl_context=self.tls_context or ssl.create_default_context()
            )
        else:
            self.client = aioimaplib.IMAP4(a.host, a.port, timeout=TIMEOUT_S)
        try:
            await self.client.wait_hello_from_server()
            _ok(await self.client.login(a.user, a.password), "login")
        except (OSError, TimeoutError) as exc:
            raise ImapError(f"cannot reach {a.host}:{a.port}: {type(exc).__name__}: {exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            try:
                await asyncio.wait_for(self.client.logout(), 5)
            except Exception:  # a connection already gone: nothing to end
                pass
            self.client = None

    @property
    def imap(self) -> aioimaplib.IMAP4:
        assert self.client is not None
        return self.client

    def has(self, capability: str) -> bool:
        return self.imap.has_capability(capability)

    async def select(self) -> int:
        """Opens the folder; its UIDVALIDITY (a change means every UID known before is void)."""
        response = _ok(await self.imap.select(_quoted(self.address.folder)), "select")
        for line in response.lines:
            found = _UIDVALIDITY.search(line if isinstance(line, bytes) else bytes(line))
            if found:
                return int(found.group(1))
        raise ImapError("select: the server named no UIDVALIDITY")

    async def uids_after(self, last_uid: int, *, unseen_only: bool) -> list[int]:
        criteria = [f"UID {last_uid + 1}:*"] + (["UNSEEN"] if unseen_only else [])
        response = _ok(await self.imap.uid_search(*criteria), "search")
        found = [int(u) for line in response.lines if isinstance(line, bytes) for u in line.split() if u.isdigit()]
        return sorted(u for u in set(found) if u > last_uid)  # `n:*` names the last UID even below n

    async def fetch(self, uid: int) -> bytes | None:
        """The mail's bytes as the server keeps them; None when it is gone (deleted meanwhile)."""
        response = _ok(await self.imap.uid("fetch", str(uid), "BODY.PEEK[]"), "fetch")
        # lines: b'<seq> FETCH (UID n BODY[] {size}', bytearray(<the mail>), b')', b'Fetch completed'
        for line in response.lines:
            if isinstance(line, bytearray):
                return bytes(line)
        return None

    async def mark(self, uids: list[int], after: str) -> None:
        """Done with these mails: seen, moved to a folder, or deleted."""
        if not uids:
            return
        chosen = ",".join(str(u) for u in uids)
        if after == "seen":
            _ok(await self.imap.uid("store", chosen, "+FLAGS.SILENT", r"(\Seen)"), "mark seen")
            return
        if after.startswith("move:"):
            folder = _quoted(after.removeprefix("move:"))
            if self.has("MOVE"):
                _ok(await self.imap.uid("move", chosen, folder), "move")
                return
            _ok(await self.imap.uid("copy", chosen, folder), "copy")
        _ok(await self.imap.uid("store", chosen, "+FLAGS.SILENT", r"(\Deleted)"), "mark deleted")
        if self.has("UIDPLUS"):  # only ours: a person's own \Deleted mails stay until they expunge
            _ok(await self.imap.uid("expunge", chosen), "expunge")
        else:
            _ok(await self.imap.expunge(), "expunge")

    async def wait_for_news(self, timeout_s: float) -> bool:
        """Until the server announces a change (IDLE: True) or `timeout_s` passed (False)."""
        if not self.has("IDLE"):
            await asyncio.sleep(timeout_s)
            _ok(await self.imap.noop(), "noop")  # the connection is still there, or this raises
            return False
        idle = await self.imap.idle_start(timeout=timeout_s + 5)
        deadline = time.monotonic() + timeout_s
        try:
            # the server's continuation ("+ idling") and flag changes come first or meanwhile: not news
            while (left := deadline - time.monotonic()) > 0:
                try:
                    pushed = await self.imap.wait_server_push(timeout=left)
                except TimeoutError:
                    return False
                lines = [line for line in pushed if isinstance(line, bytes)] if isinstance(pushed, list) else []
                if any(line.endswith((b" EXISTS", b" RECENT")) for line in lines):
                    return True
                if b"stop_wait_server_push" in lines:
                    return False
            return False
        finally:
            self.imap.idle_done()
            try:
                await asyncio.wait_for(idle, 10)
            except TimeoutError as exc:
                raise ImapError("the server did not end IDLE") from exc
