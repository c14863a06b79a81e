"""Polling the configured mailboxes: each by one ingest instance at a time (store.py's leases), every
mail filed once, none lost.

A cycle takes the UIDs above the last one filed, fetches each mail without marking it, hands it to
`IngestService.accept` (which returns once Kafka acknowledged it), then marks the batch (seen, moved,
deleted) and only then records the batch's last UID. A crash anywhere in between fetches the same
mails again: their message ids follow from their content and Message-ID, so the second filing is a
duplicate downstream, not a second message. A new UIDVALIDITY voids the UIDs known, and the folder is
read again from the start, with the same effect."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from services.ingest.channels.mail import normalise_email
from services.ingest.domain import Normalised, Rejected
from services.ingest.mailboxes.config import Address
from services.ingest.mailboxes.imap import ImapError, ImapSession
from services.ingest.mailboxes.store import LEASE_S, MailboxState, MailboxStore
from services.ingest.service import IngestService, NotDurable
from services.ingest.verification import mail_sender_passed, trusted_ids, verified
from shared.credentials import Vault
from shared.events import utcnow

log = logging.getLogger(__name__)

BATCH = 50  # mails marked, and their last UID recorded, together
REFRESH_S = 5.0  # how soon a configuration change reaches every instance


def owner_name(instance: str) -> str:
    """Stable across a restart of the same instance, so it takes its leases straight back."""
    return f"{socket.gethostname()}/ingest-{instance}"


class MailboxPoller:
    """Runs one task per configured mailbox; each task polls only while its instance holds the lease."""

    def __init__(
        self, *, store: MailboxStore, service: IngestService, vault: Vault, owner: str, max_blob_bytes: int
    ) -> None:
        self.store, self.service, self.vault, self.owner = store, service, vault, owner
        self.max_blob_bytes = max_blob_bytes
        self.tasks: dict[str, tuple[Any, asyncio.Task[None]]] = {}  # mailbox id -> (config version, task)

    async def run(self) -> None:
        """Forever: start, restart (changed configuration) and stop the mailboxes' tasks."""
        try:
            while True:
                try:
                    await self._refresh()
                except Exception as exc:  # the database away: the tasks running keep going
                    log.warning("mailboxes: cannot read the configuration (%s: %s)", type(exc).__name__, exc)
                await asyncio.sleep(REFRESH_S)
        finally:
            for _, task in self.tasks.values():
                task.cancel()
            await asyncio.gather(*(t for _, t in self.tasks.values()), return_exceptions=True)

    async def _refresh(self) -> None:
        configs = {doc["_id"]: doc for doc in await self.store.all()}
        for mailbox_id in list(self.tasks):
            version, task = self.tasks[mailbox_id]
            if mailbox_id not in configs or configs[mailbox_id].get("updated_at") != version or task.done():
                task.cancel()
                del self.tasks[mailbox_id]
        for mailbox_id, config in configs.items():
            if mailbox_id not in self.tasks:
                task = asyncio.create_task(self._keep_polling(config), name=f"mailbox-{mailbox_id}")
                self.tasks[mailbox_id] = (config.get("updated_at"), task)

    async def _keep_polling(self, config: dict[str, Any]) -> None:
        mailbox_id = config["_id"]
        delay = 1.0
        while True:
            if not await self._hold(mailbox_id):
                await asyncio.sleep(LEASE_S / 2)
                continue
            try:
                address = Address(**config["address"], password=self.vault.open(config["password"]))
                async with ImapSession(address) as session:
                    delay = 1.0
                    while await self._hold(mailbox_id):
                        await self.cycle(mailbox_id, config, session)
                        await self._until_next_poll(mailbox_id, float(config.get("poll_s", 30)), session)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("mailbox %s: %s; trying again in %.0f s", mailbox_id, problem, delay)
                await self._note_error(mailbox_id, problem)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def _until_next_poll(self, mailbox_id: str, poll_s: float, session: ImapSession) -> None:
        """Until the server announces new mail (IDLE) or `poll_s` passed, renewing the lease meanwhile:
        no wait is longer than half a lease period."""
        deadline = time.monotonic() + poll_s
        while (left := deadline - time.monotonic()) > 0:
            if await session.wait_for_news(min(left, LEASE_S / 2)) or not await self._hold(mailbox_id):
                return

    async def _hold(self, mailbox_id: str) -> bool:
        try:
            return await self.store.hold(mailbox_id, self.owner)
        except Exception as exc:
            log.warning("mailbox %s: the lease cannot be checked (%s)", mailbox_id, exc)
            return False

    async def _note_error(self, mailbox_id: str, problem: str) -> None:
        try:
            state = await self.store.state(mailbox_id)
            state.last_error, state.last_poll = problem, utcnow()
            await self.store.save(mailbox_id, state)
        except Exception:  # the database away too: the log has it
            pass

    async def cycle(self, mailbox_id: str, config: dict[str, Any], session: ImapSession) -> int:
        """Files the folder's new mails; how many. Raises on IMAP or Kafka trouble, having recorded
        what was done (the next cycle goes on from there)."""
        state = await self.store.state(mailbox_id)
        uidvalidity = await session.select()
        if uidvalidity != state.uidvalidity:
            state.uidvalidity, state.last_uid = uidvalidity, 0
        after = config.get("after", "seen")
        uids = await session.uids_after(state.last_uid, unseen_only=after == "seen")
        filed = 0
        try:
            for start in range(0, len(uids), BATCH):
                if start and not await self._hold(mailbox_id):  # a long backlog: the lease renewed as it goes
                    break
                batch = uids[start : start + BATCH]
                done = [uid for uid in batch if await self._file(mailbox_id, config, session, uid, state)]
                await session.mark(done, after)
                state.last_uid = batch[-1]
                filed += len(done)
                await self.store.save(mailbox_id, state)
            state.last_error = None
        finally:
            state.last_poll = utcnow()
            await self.store.save(mailbox_id, state)
        return filed

    async def _file(
        self, mailbox_id: str, config: dict[str, Any], session: ImapSession, uid: int, state: MailboxState
    ) -> bool:
        """True once Kafka holds the mail; False for one that is gone or is not a mail (left where it
        is, for a person to look at); raises when it could not be made durable (the cycle stops)."""
        raw = await session.fetch(uid)
        if raw is None:
            return False
        try:
            item = await asyncio.to_thread(
                normalise_email, raw, received_at=utcnow(), max_blob_bytes=self.max_blob_bytes
            )
            item = self._with_mailbox(item, mailbox_id, raw, config)
            await self.service.accept(item.message, item.blobs, item.claim)
        except Rejected as exc:
            state.refused += 1
            state.last_error = f"UID {uid} was not filed: {exc.message}"[:500]
            return False
        except NotDurable as exc:
            raise ImapError(f"not filed yet, Kafka or the store is away: {exc}") from exc
        state.filed += 1
        return True

    @staticmethod
    def _with_mailbox(item: Normalised, mailbox_id: str, raw: bytes, config: dict[str, Any]) -> Normalised:
        """The mailbox's id on the message; the sender verified only by a relay this mailbox trusts."""
        message = item.message.model_copy(update={"mailbox_id": mailbox_id})
        sender = message.customer.identities[0]
        trusted = trusted_ids(",".join(config.get("trusted_authserv_ids") or []))
        if trusted and sender.kind == "email" and mail_sender_passed(raw, sender.value, trusted):
            message = verified(message)
        return Normalised(message, item.blobs, item.claim)
