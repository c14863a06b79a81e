"""IMAP mailboxes against a real Dovecot (Debian's dovecot-imapd), started here on a free loopback port
with a Maildir the tests fill: the poller on its own (a crash between fetch and mark), then ingest
polling it on the real stack (every mail filed once, across an ingest restart; passwords never shown)."""
from __future__ import annotations

import asyncio
import ipaddress
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.ingest.mailboxes.config import Address
from shared.credentials import Vault
from services.ingest.mailboxes.imap import ImapError, ImapSession
from services.ingest.mailboxes.poller import MailboxPoller
from services.ingest.mailboxes.store import MailboxState
from services.ingest.service import IngestService
from shared.events import inbound_message_id
from tests.e2e.helpers import poll
from tests.unit.test_ingest_http import MemoryBlobs, RecordingPublisher

CORPUS = Path(__file__).parents[1] / "data" / "mail"
INSTALL = "apt-get install -y dovecot-imapd (as root) to run the IMAP mailbox tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or next((p for p in ("/usr/sbin/dovecot",) if os.path.exists(p)), None)


def ensure_dovecot() -> str:
    """Dovecot's binary: installed from Debian's archive when missing and we are root, else a skip."""
    found = dovecot_binary()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"Dovecot is not installed: {INSTALL}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True, timeout=600)
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "dovecot-imapd"], env=env, capture_output=True,
                          check=False, timeout=900)
    found = dovecot_binary()
    if done.returncode != 0 or not found:
        pytest.skip(f"installing Dovecot failed ({done.stderr.decode(errors='replace')[-300:]}): {INSTALL}")
    return found


class Dovecot:
    """One Dovecot on 127.0.0.1:<port> serving user `shop` (password `secret`) from a Maildir of its own."""

    user, password = "shop", "secret"

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="deskstream-dovecot-"))
        self.root.chmod(0o755)  # the mail user's processes must reach the Maildir below
        self.port, self.tls_port = free_port(), free_port()
        self.certificate = self._self_signed()
        me = pwd.getpwuid(os.geteuid())
        # as root, mail is accessed as `nobody` (Dovecot refuses uid 0); otherwise as ourselves
        mail_user = pwd.getpwnam("nobody") if os.geteuid() == 0 else me
        self.uid, self.gid = mail_user.pw_uid, mail_user.pw_gid
        self.maildir = self.root / "home" / self.user / "Maildir"
        self.process: subprocess.Popen | None = None
        self.sequence = 0
        internal = "" if os.geteuid() == 0 else f"default_internal_user = {me.pw_name}\n" \
                                                 f"default_login_user = {me.pw_name}\n"
        (self.root / "users").write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        (self.root / "dovecot.conf").write_text(f"""
{internal}protocols = imap
listen = 127.0.0.1
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
ssl = yes
ssl_cert = <{self.root}/cert.pem
ssl_key = <{self.root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/users
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={self.root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
}}
""")
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        for path in [self.root / "home", self.root / "home" / self.user, self.maildir,
                     *(self.maildir / s for s in ("cur", "new", "tmp"))]:
            os.chown(path, self.uid, self.gid)

    def url(self, folder: str = "INBOX") -> str:
        return f"imap://{self.user}:{self.password}@127.0.0.1:{self.port}/{folder}"

    def address(self, *, tls: bool = False) -> Address:
        return Address(tls=tls, host="127.0.0.1", port=self.tls_port if tls else self.port, user=self.user,
                       password=self.password, folder="INBOX")

    def trusting_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's self-signed certificate (and checks the name)."""
        return ssl.create_default_context(cadata=self.certificate)

    def _self_signed(self) -> str:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
                .not_valid_after(now + timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        (self.root / "cert.pem").write_text(pem)
        (self.root / "key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return pem

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "-F", "-c", str(self.root / "dovecot.conf")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"dovecot exited: {self.process.stderr.read().decode()[-500:]}")
                time.sleep(0.1)
        raise RuntimeError("dovecot did not listen within 20 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def drop(self, raw: bytes) -> None:
        """A mail delivered into INBOX, as an MDA does it (written to tmp/, renamed into new/)."""
        self.sequence += 1
        name = f"{time.time_ns()}.{self.sequence}_{uuid.uuid4().hex[:8]}.deskstream"
        tmp, new = self.maildir / "tmp" / name, self.maildir / "new" / name
        tmp.write_bytes(raw)
        os.chown(tmp, self.uid, self.gid)
        tmp.rename(new)


@pytest.fixture(scope="module")
def dovecot():
    server = Dovecot(ensure_dovecot())
    server.start()
    yield server
    server.stop()


def customer_mail(n: int, *, tag: str) -> tuple[bytes, str]:
    msg = EmailMessage()
    msg["From"] = f"Customer {n} <customer{n}.{tag}@example.com>"
    msg["To"] = "help@shop.example"
    msg["Subject"] = f"Question {n}"
    msg["Message-ID"] = f"<{tag}-{n}@example.com>"
    msg.set_content(f"Question number {n} about my order.")
    return msg.as_bytes(), f"{tag}-{n}@example.com"


# ------------------------------------------------------------------ the poller alone, against Dovecot

class MemoryStore:
    """The mailbox state as the lease holder keeps it; every instance holds every lease."""

    def __init__(self) -> None:
        self.states: dict[str, MailboxState] = {}

    async def state(self, mailbox_id):
        s = self.states.get(mailbox_id) or MailboxState()
        return MailboxState(**s.__dict__)

    async def save(self, mailbox_id, state):
        self.states[mailbox_id] = MailboxState(**state.__dict__)

    async def hold(self, mailbox_id, owner):
        return True


class CrashBeforeMark(Exception):
    pass


async def test_a_crash_between_fetch_and_mark_loses_nothing_and_files_nothing_twice(dovecot):
    ids = [customer_mail(n, tag=f"crash{uuid.uuid4().hex[:6]}") for n in range(5)]
    for raw, _ in ids:
        dovecot.drop(raw)
    publisher, store = RecordingPublisher(), MemoryStore()
    service = IngestService(publisher=publisher, source="test", blobs=MemoryBlobs(), is_connected=lambda: True)
    poller = MailboxPoller(store=store, service=service, vault=Vault("k", "mailbox passwords"), owner="me", max_blob_bytes=1_000_000)
    config = {"_id": "mb", "after": "seen", "poll_s": 1}
    async with ImapSession(dovecot.address()) as session:
        async def crash(uids, after):
            raise CrashBeforeMark()
        session.mark = crash
        with pytest.raises(CrashBeforeMark):
            await poller.cycle("mb", config, session)
    first = [r["id"] for r in publisher.records]
    assert len(first) >= 5  # Kafka has them all; none is marked yet
    async with ImapSession(dovecot.address()) as session:  # the restarted instance
        await poller.cycle("mb", config, session)
        assert await session.uids_after(0, unseen_only=True) == []  # all marked now
        await poller.cycle("mb", config, session)  # nothing new: nothing published
    again = [r["id"] for r in publisher.records]
    # the second filing has the same ids: one message each downstream; none lost
    assert set(again) == set(first) and len(again) == 2 * len(first)
    assert {inbound_message_id("email", mid) for _, mid in ids} <= set(first)
    assert all(r["data"]["mailbox_id"] == "mb" for r in publisher.records)


async def test_a_moved_mail_leaves_the_folder_and_a_new_one_is_announced_by_idle(dovecot):
    publisher = RecordingPublisher()
    service = IngestService(publisher=publisher, source="test", blobs=MemoryBlobs(), is_connected=lambda: True)
    poller = MailboxPoller(store=MemoryStore(), service=service, vault=Vault("k", "mailbox passwords"), owner="me",
                           max_blob_bytes=1_000_000)
    config = {"_id": "mb-move", "after": "delete", "poll_s": 1}
    async with ImapSession(dovecot.address()) as session:
        await poller.cycle("mb-move", config, session)  # what earlier tests left: gone after this
        assert session.has("IDLE")
        raw, mid = customer_mail(1, tag=f"idle{uuid.uuid4().hex[:6]}")
        start = time.monotonic()
        waiting = asyncio.create_task(session.wait_for_news(20))
        await asyncio.sleep(0.5)
        dovecot.drop(raw)
        assert await waiting is True  # announced, not timed out
        assert time.monotonic() - start < 5
        assert await poller.cycle("mb-move", config, session) == 1
        assert await session.uids_after(0, unseen_only=False) == []
    assert publisher.records[-1]["id"] == inbound_message_id("email", mid)


# ------------------------------------------------------------------ ingest polling it, on the real stack

def ticket_of(tickets, message_id: str) -> str | None:
    r = tickets.get(f"/v1/messages/{message_id}")
    return r.json()["ticket_id"] if r.status_code == 200 else None


@pytest.mark.e2e
@pytest.mark.runs_last(order=4)
def test_a_configured_mailbox_has_every_mail_filed_once_across_an_ingest_restart(stack, agent, dovecot):
    tag = f"mbx{uuid.uuid4().hex[:6]}"
    mails = [customer_mail(n, tag=tag) for n in range(200)]
    for raw, _ in mails[:150]:
        dovecot.drop(raw)
    for path in sorted(CORPUS.glob("*.eml")):  # the ugly ones too
        dovecot.drop(path.read_bytes())
    mailbox_id = f"shop-{tag}"
    with stack.client("ingest") as ingest, stack.client("tickets") as tickets:
        r = ingest.put(f"/v1/mailboxes/{mailbox_id}",
                       json={"url": dovecot.url(), "poll_s": 2, "after": "seen"})
        assert r.status_code == 200, r.text
        assert dovecot.password not in r.text and dovecot.password not in ingest.get(
            f"/v1/mailboxes/{mailbox_id}").text
        with stack.client("ingest", auth=False) as anonymous:
            assert anonymous.get(f"/v1/mailboxes/{mailbox_id}").status_code == 401
        # ingest restarted while it works through the mailbox
        assert poll(lambda: ingest.get(f"/v1/mailboxes/{mailbox_id}").json()["filed"] > 0, timeout=60)
        stack.kill("ingest")
        stack.restart("ingest")
        for raw, _ in mails[150:]:
            dovecot.drop(raw)
        wanted = [inbound_message_id("email", mid) for _, mid in mails]
        assert poll(lambda: all(ticket_of(tickets, m) for m in wanted), timeout=60), "a mail was not filed within 60 s"
        ticket_ids = {ticket_of(tickets, m) for m in wanted}
        assert len(ticket_ids) == len(wanted)  # one customer each: one ticket each
        for ticket_id in ticket_ids:
            assert len(tickets.get(f"/v1/tickets/{ticket_id}").json()["messages"]) == 1  # filed once
        state = ingest.get(f"/v1/mailboxes/{mailbox_id}").json()
        assert state["last_poll"] and state["polled_by"]
        # a mail arriving now is filed within poll_s + 5 s (IDLE: sooner)
        raw, mid = customer_mail(99, tag=tag)
        dovecot.drop(raw)
        assert poll(lambda: ticket_of(tickets, inbound_message_id("email", mid)), timeout=7)
        assert ingest.delete(f"/v1/mailboxes/{mailbox_id}").status_code == 204
        assert ingest.get(f"/v1/mailboxes/{mailbox_id}").status_code == 404


async def test_mail_is_fetched_over_imaps_and_an_untrusted_certificate_is_refused(dovecot):
    publisher = RecordingPublisher()
    service = IngestService(publisher=publisher, source="test", blobs=MemoryBlobs(), is_connected=lambda: True)
    poller = MailboxPoller(store=MemoryStore(), service=service, vault=Vault("k", "mailbox passwords"), owner="me",
                           max_blob_bytes=1_000_000)
    raw, mid = customer_mail(1, tag=f"tls{uuid.uuid4().hex[:6]}")
    dovecot.drop(raw)
    async with ImapSession(dovecot.address(tls=True), tls_context=dovecot.trusting_context()) as session:
        assert await poller.cycle("mb-tls", {"_id": "mb-tls", "after": "seen", "poll_s": 1}, session) >= 1
    assert inbound_message_id("email", mid) in [r["id"] for r in publisher.records]
    with pytest.raises(ImapError):  # the system's trust store does not know a self-signed certificate
        async with ImapSession(dovecot.address(tls=True)):
            pass
