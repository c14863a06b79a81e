"""Mailbox configuration, sealed passwords and leases, without a server (Dovecot: tests/e2e/test_mail_mailboxes.py)."""
import pytest
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from services.ingest.mailboxes.config import MailboxPut, address_of
from shared.credentials import Vault
from services.ingest.mailboxes.store import LEASE_S, MailboxStore


def test_a_mailbox_url_is_read_into_its_parts_and_shown_without_its_password():
    a = address_of("imaps://shop%40example.com:p%3Ass@imap.example.com/Support%20Inbox")
    assert (a.tls, a.host, a.port, a.user, a.password, a.folder) == (
        True, "imap.example.com", 993, "shop@example.com", "p:ss", "Support Inbox")
    assert "p:ss" not in a.shown() and "p%3Ass" not in a.shown()
    assert address_of(a.shown()).user == "shop@example.com"
    plain = address_of("imap://u:p@127.0.0.1:1143")
    assert (plain.tls, plain.port, plain.folder) == (False, 1143, "INBOX")


@pytest.mark.parametrize("body", [
    {"url": "http://u:p@host/INBOX"},
    {"url": "imap://host/INBOX"},
    {"url": "imap://u:p@host:99999/INBOX"},
    {"url": "imap://u:p@host/INBOX", "after": "archive"},
    {"url": "imap://u:p@host/INBOX", "poll_s": 0},
])
def test_a_mailbox_that_cannot_be_polled_is_refused(body):
    with pytest.raises(ValidationError):
        MailboxPut.model_validate(body)


def test_passwords_are_sealed_and_open_only_with_the_same_key():
    sealed = Vault("key one", "mailbox passwords").seal("hunter2")
    assert "hunter2" not in sealed and Vault("key one", "mailbox passwords").open(sealed) == "hunter2"
    with pytest.raises(ValueError):
        Vault("key two", "mailbox passwords").open(sealed)


class Leases:
    """A collection as FerretDB keeps one: only an insert under a unique _id is atomic."""

    def __init__(self):
        self.docs = {}

    async def insert_one(self, doc):
        if doc["_id"] in self.docs:
            raise DuplicateKeyError("duplicate")
        self.docs[doc["_id"]] = doc

    async def find_one(self, query):
        return self.docs.get(query["_id"])

    async def delete_many(self, query):
        for key in [k for k, d in self.docs.items() if d["mailbox_id"] == query["mailbox_id"]
                    and d["period"] < query["period"]["$lt"]]:
            del self.docs[key]


class Mongo:
    def __init__(self):
        self.leases = Leases()

    def collection(self, name):
        return self.leases if name == "ingest_mailbox_leases" else None


async def test_one_instance_holds_a_mailbox_until_it_stops_renewing():
    store = MailboxStore(Mongo())
    t = 1000 * LEASE_S
    assert await store.hold("mb", "a", t) and not await store.hold("mb", "b", t)
    assert await store.hold("mb", "a", t + LEASE_S)  # renewed while held
    assert not await store.hold("mb", "b", t + LEASE_S)
    # `a` stopped: the period it claimed ahead passes, then `b` takes over
    assert not await store.hold("mb", "b", t + 2 * LEASE_S)
    assert await store.hold("mb", "b", t + 3 * LEASE_S)
    assert await store.holder("mb", t + 3 * LEASE_S) == "b"
    assert len(store.leases.docs) <= 5  # old periods are cleaned up
