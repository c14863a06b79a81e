"""Filing messages and applying commands for the partitions this process owns.

The process consuming partition n of `ingest.messages`, `tickets.commands` and `sla.events` owns
the tickets of partition n: a new conversation's ticket gets an id Kafka's partitioner puts on the
conversation's partition, so its commands and SLA events arrive where its messages do. It holds
those tickets in memory (without their history) and never reads the database to decide.

Per batch: decide every record in memory; append the batch's journal entries (one insert per 100);
send the batch's events, outcomes and forwarded commands and wait for them all; then the changed
tickets' values to the changelog (`tickets.state`), with the input offsets they hold. The runner
commits the offsets after that. Event ids derive from the input, so a replay after a crash sends
the same events again, which consumers drop. The list documents (`tickets`) are written apart,
coalesced (`flush_docs`)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast, overload

from pydantic import BaseModel, ValidationError

from services.tickets.csat.rules import CsatSettings, Surveys
from services.tickets.customers import CustomerBook, link_rows
from services.tickets.domain import (
    FINISHED,
    CustomerInfo,
    DeliveryState,
    Event,
    LifecycleError,
    Message,
    Priority,
    Status,
    ThreadingPolicy,
    Ticket,
    continues,
    query_terms,
    search_terms,
    ticket_id_for,
)
from services.tickets.erasure import Shredder
from services.tickets.notices import with_notices
from services.tickets.store import TicketStore, blob_refs, list_document, ticket_of_document
from shared import topics
from shared.events import (
    AddTicketNote,
    ApplyAutomation,
    AssignTicket,
    ChangeTicketStatus,
    ChangeTicketTags,
    CloseMergedTicket,
    CommandOutcome,
    CustomerChanged,
    DeliveryReported,
    EraseTicket,
    EventType,
    FileMessage,
    MergeTicket,
    MessageReceived,
    PurgeTicket,
    RecordCsatAnswer,
    RecordDelivery,
    RefreshLists,
    ReplyToTicket,
    SetTicketPriority,
    SlaTargetEvent,
    SplitTicket,
    SuspectDuplicate,
    TicketCommand,
    TicketPurged,
    UnassignTicket,
    inbound_message_id,
    stable_id,
)
from shared.kafka import Outgoing, Producer, event, partition_of
from shared.state import ChangelogStore
from shared.stream import Batch, Record, Rejected, as_record, dead_letter

log = logging.getLogger(__name__)
TICKET = "T:"
THREAD = "thread:"
PARKED = "parked:"  # commands waiting for their ticket (see `_park`)
PARK_FOR = timedelta(minutes=10)  # how long a command waits for its ticket before it is dead-lettered
# statuses in which a ticket is let go of from memory once it is old enough
LET_GO = frozenset({*FINISHED, Status.spam, Status.deleted})
SLA_STATES = {EventType.SLA_WARNING: "warning", EventType.SLA_BREACHED: "breached", EventType.SLA_MET: "met"}


@dataclass
class Held:
    """A ticket as this process holds it, with what its list document still lacks."""

    ticket: Ticket
    doc_version: int = 0  # the ticket's version the list document has (0: none written yet)
    words: list[str] = field(default_factory=list)  # search words not yet on the list document
    stale_since: datetime | None = None

    def encode(self) -> dict[str, Any]:
        return {
            "t": self.ticket.core(),
            "dv": self.doc_version,
            "w": self.words,
            "ss": self.stale_since.isoformat() if self.stale_since else None,
        }

    @classmethod
    def decode(cls, value: dict[str, Any]) -> Held:
        return cls(
            Ticket.model_validate(value["t"]),
            value.get("dv", 0),
            value.get("w", []),
            datetime.fromisoformat(value["ss"]) if value.get("ss") else None,
        )


def due_at(
    status: Status,
    *,
    merged: bool,
    postponed_until: datetime | None,
    resolved_at: datetime | None,
    updated_at: datetime,
    auto_close_s: float,
    keep_closed: timedelta,
    csat_due_at: datetime | None = None,
) -> datetime | None:
    """When time alone next changes a ticket: a postponed one wakes, a resolved one closes, a finished
    one is let go of from memory (its list document and journal keep it)."""
    if merged or status in LET_GO:
        return updated_at + keep_closed
    if status == Status.postponed:
        return postponed_until
    if status == Status.resolved and resolved_at is not None:
        closes = resolved_at + timedelta(seconds=auto_close_s)
        return min(closes, csat_due_at) if csat_due_at else closes  # the customer is asked first
    return None


@overload
def _time(value: str) -> datetime: ...
@overload
def _time(value: str | None) -> datetime | None: ...
def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def encode_value(key: str, value: Any) -> Any:
    return value.encode() if isinstance(value, Held) else value


def decode_value(key: str, value: Any) -> Any:
    return Held.decode(value) if key.startswith(TICKET) else value


@dataclass
class Unit:
    """What a batch (or a background job) writes and sends."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    records: list[Outgoing] = field(default_factory=list)  # events, forwarded commands, outcomes
    links: list[tuple[str, Any]] = field(default_factory=list)
    # database work the batch's records wait for (a split's message moving, a purge's forgetting)
    jobs: list[Callable[[], Awaitable[object]]] = field(default_factory=list)  # (their results unused)


@dataclass
class DocPolicy:
    """When list documents are written, coalesced: a new ticket once it was filed here `new_delay` ago
    (its first assignment is known by then, so it is written once: an insert, where a later change is an
    update that costs FerretDB ~10× as much), a changed one once its change is `changed_delay` old (later
    changes ride along); both by this process's clock. Sooner is never needed for what agents see: a
    list read first asks every partition to write what it has (RefreshLists)."""

    new_delay: timedelta = timedelta(seconds=2)
    changed_delay: timedelta = timedelta(seconds=10)
    keep_closed: timedelta = timedelta(days=1)


class TicketsProcessor:
    def __init__(
        self,
        *,
        store: TicketStore,
        producer: Producer,
        bootstrap_servers: str,
        source: str,
        threading: ThreadingPolicy | None = None,
        docs: DocPolicy | None = None,
        hot: int = 5000,
        hold: int = 10_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        shredder: Shredder | None = None,
    ) -> None:
        self.store = store
        self.shredder = shredder  # what a purged ticket leaves outside the journal (None: nothing more)
        self.producer = producer
        self.source = source
        self.threading = threading or ThreadingPolicy()
        self.docs = docs or DocPolicy()
        self.clock = clock
        self.partitions = 6  # of the input topics; learnt at start (`learn_partitions`)
        self.state: ChangelogStore[Any] = ChangelogStore(
            topics.TICKETS_STATE,
            producer,
            bootstrap_servers,
            encode=encode_value,
            decode=decode_value,
            hot=hot,
            coldable=lambda key: key.startswith(TICKET),
        )
        self.hold = hold  # tickets held at most (the least recently changed beyond it are let go of)
        # every held ticket, least recently changed first: the order tickets are let go of in
        self.recency: dict[tuple[int, str], None] = {}
        self.customers = CustomerBook()
        self.stale: dict[int, set[str]] = {}  # partition → tickets whose list document is behind
        self.timed: dict[int, dict[str, datetime]] = {}  # partition → ticket → when a clock next changes it
        self.parked: dict[int, dict[str, datetime]] = {}  # partition → ticket → since when commands wait for it
        self.purged_now: set[str] = set()  # tickets of the batch read back as purged
        # held while list documents are written, so a purged ticket's tombstone is never overwritten by a
        # write of it chosen before it was purged
        self.writing = asyncio.Lock()
        self.handlers: dict[str, Callable[[Record, Unit], Awaitable[None]]] = {
            EventType.MESSAGE_RECEIVED: self._message_received,
            EventType.DELIVERY_REPORTED: self._delivery_reported,
            EventType.ASSIGN_TICKET: self._command,
            EventType.APPLY_AUTOMATION: self._command,
            EventType.REPLY_TO_TICKET: self._command,
            EventType.CHANGE_TICKET_STATUS: self._command,
            EventType.ADD_TICKET_NOTE: self._command,
            EventType.SET_TICKET_PRIORITY: self._command,
            EventType.CHANGE_TICKET_TAGS: self._command,
            EventType.UNASSIGN_TICKET: self._command,
            EventType.MERGE_TICKET: self._command,
            EventType.CLOSE_MERGED_TICKET: self._command,
            EventType.SPLIT_TICKET: self._command,
            EventType.PURGE_TICKET: self._command,
            EventType.ERASE_TICKET: self._command,
            EventType.RECORD_DELIVERY: self._command,
            EventType.RECORD_CSAT_ANSWER: self._command,
            EventType.SUSPECT_DUPLICATE: self._command,
            EventType.FILE_MESSAGE: self._file_forwarded,
            EventType.REFRESH_LISTS: self._refresh_lists,
            EventType.SLA_WARNING: self._sla_event,
            EventType.SLA_BREACHED: self._sla_event,
            EventType.SLA_MET: self._sla_event,
        }
        # what each command does to the ticket, and what its outcome says
        self.decisions: dict[type[BaseModel], Callable[[Ticket, Any, datetime, Unit], list[Event]]] = {
            AssignTicket: self._assign,
            ApplyAutomation: self._automate,
            ReplyToTicket: self._reply,
            ChangeTicketStatus: self._change_status,
            AddTicketNote: self._note,
            SetTicketPriority: self._priority,
            ChangeTicketTags: self._tags,
            UnassignTicket: self._unassign,
            MergeTicket: self._merge,
            CloseMergedTicket: self._close_merged,
            SplitTicket: self._split,
            PurgeTicket: self._purge,
            EraseTicket: self._erase,
            RecordDelivery: self._delivery,
            RecordCsatAnswer: self._csat_answer,
            SuspectDuplicate: self._suspect_duplicate,
        }

    # customer confirmation of resolutions (services/tickets/csat): the links, and what an admin set, held
    # here and replaced when an admin changes it (no read on the message path)
    surveys: Surveys | None = None
    csat_settings: CsatSettings = CsatSettings()

    # ------------------------------------------------------------ ownership (shared/stream.py)
    async def load(self, partitions: set[int]) -> Any:
        return await self.state.read(partitions)

    def install(self, partitions: set[int], loaded: Any) -> None:
        self.state.install(loaded)
        for p in partitions:
            self.stale[p], self.timed[p], self.parked[p] = set(), {}, {}
            for key in self.state.keys(p):
                if key.startswith(PARKED):
                    waiting = self.state.raw(p, key)
                    self.parked[p][key[len(PARKED) :]] = min(datetime.fromisoformat(w["at"]) for w in waiting)
                if key.startswith(TICKET):
                    value = self.state.raw(p, key)  # a glance, without holding it decoded
                    t = value["t"]
                    self.recency[(p, t["id"])] = None  # the changelog's order: the last changed last
                    self._track_values(
                        p,
                        t["id"],
                        value.get("dv", 0) < t["version"],
                        due_at(
                            Status(t["status"]),
                            merged=bool(t.get("merged_into")),
                            postponed_until=_time(t.get("postponed_until")),
                            resolved_at=_time(t.get("resolved_at")),
                            updated_at=_time(t["updated_at"]),
                            auto_close_s=self.auto_close_s,
                            keep_closed=self.docs.keep_closed,
                            csat_due_at=_time(t.get("csat_due_at")),
                        ),
                    )
        log.info(
            "holding %d ticket(s) and thread(s) of partitions %s",
            sum(len(v[0]) for v in loaded.values()),
            sorted(partitions),
        )

    def revoke(self, partitions: set[int]) -> None:
        self.state.drop(partitions)
        for p in partitions:
            self.stale.pop(p, None)
            self.timed.pop(p, None)
            self.parked.pop(p, None)
        if partitions:
            self.recency = {where: None for where in self.recency if where[0] not in partitions}

    def _track(self, p: int, held: Held) -> None:
        t = held.ticket
        self.recency.pop((p, t.id), None)
        self.recency[(p, t.id)] = None
        self._track_values(
            p,
            t.id,
            held.doc_version < t.version,
            due_at(
                t.status,
                merged=bool(t.merged_into),
                postponed_until=t.postponed_until,
                resolved_at=t.resolved_at,
                updated_at=t.updated_at,
                auto_close_s=self.auto_close_s,
                keep_closed=self.docs.keep_closed,
                csat_due_at=t.csat_due_at,
            ),
        )

    def _track_values(self, p: int, ticket_id: str, stale: bool, due: datetime | None) -> None:
        """Keep the two short lists the background work reads instead of every ticket held: tickets whose
        list document is behind, and when a clock next changes a ticket (it wakes, closes, is let go of)."""
        if stale:
            self.stale.setdefault(p, set()).add(ticket_id)
        if due is not None:
            self.timed.setdefault(p, {})[ticket_id] = due
        else:
            self.timed.get(p, {}).pop(ticket_id, None)

    def owns(self, partition: int) -> bool:
        return partition in self.state.data

    # ------------------------------------------------------------ a batch
    async def process(self, batch: Batch) -> None:
        await self._recall(batch)
        unit = Unit()
        last: dict[tuple[int, str], int] = {}
        for record in batch.records:
            last[(record.partition, record.topic)] = record.offset + 1
            if self.state.covers(record.partition, record.topic, record.offset):
                continue  # applied before the crash that made this a replay
            handler = self.handlers.get(record.type)
            if handler is None:
                continue  # a type this service does not act on
            try:
                await handler(record, unit)
            except (ValidationError, ValueError, Rejected) as exc:
                batch.reject(record, f"{type(exc).__name__}: {exc}"[:2000])
        for (p, topic), offset in last.items():
            self.state.mark(p, topic, offset)
        await self.commit(unit)

    async def commit(self, unit: Unit) -> None:
        """Make a unit durable in the order replay needs: the database first, then the events (and
        outcomes), then the state — so the changelog never runs ahead of the events a change caused."""
        await asyncio.gather(self.store.append(unit.entries), self.store.add_links(unit.links))
        for job in unit.jobs:
            await job()
        if unit.records:
            await self.producer.send_many(with_notices(unit.records))
        await self.state.flush()

    async def _recall(self, batch: Batch) -> None:
        """Tickets let go of from memory (finished a while ago, or quiet beyond what a process holds) that
        the batch's messages, commands or SLA events reach are read back from their list documents, one
        read each, together: the only reads of this path, and rare."""
        wanted: set[tuple[int, str]] = set()
        self.purged_now = set()
        for record in batch.records:
            p, data = record.partition, record.data
            if p not in self.state.data or not isinstance(data, dict):
                continue
            handler = self.handlers.get(record.type)
            named: list[Any] = []
            if handler in (self._command, self._sla_event, self._file_forwarded):
                named.append(data.get("ticket_id"))
            elif handler == self._message_received:
                named.append(data.get("ticket_ref"))
                if isinstance(thread := data.get("thread_key"), str):
                    named.append(self.state.get(p, THREAD + thread))
            for ticket_id in named:
                if (
                    isinstance(ticket_id, str)
                    and not self._local(p, ticket_id)
                    and partition_of(ticket_id, self.partitions) == p
                ):
                    wanted.add((p, ticket_id))
        if not wanted:
            return
        reads = asyncio.Semaphore(16)

        async def read(ticket_id: str) -> dict[str, Any] | None:
            async with reads:
                return await self.store.ticket_doc(ticket_id)

        docs = await asyncio.gather(*(read(ticket_id) for _, ticket_id in wanted))
        for (p, ticket_id), doc in zip(wanted, docs, strict=True):
            if doc is not None and doc.get("purged"):
                self.purged_now.add(ticket_id)
            if doc is None or doc.get("purged"):
                continue
            held = Held(ticket_of_document(doc))
            held.doc_version = held.ticket.version
            self.state.put(p, TICKET + ticket_id, held)
            self._track(p, held)
        self.recalled += len(wanted)

    recalled = 0  # tickets read back from their list documents (a counter for the metrics)

    def release(self) -> int:
        """Beyond `hold` tickets, let go of the least recently changed ones whose list document is current
        and that no clock is running for (a finished one goes as it would after TICKETS_KEEP_CLOSED_S); a
        quiet open ticket keeps its conversation's thread key, so its next message reads it back."""
        excess = len(self.recency) - self.hold
        released = 0
        if excess <= 0:
            return 0
        for where in list(itertools.islice(self.recency, 2 * excess + 16)):  # those skipped go to the back
            if released >= excess:
                break
            p, ticket_id = where
            key = TICKET + ticket_id
            if (p, key) not in self.state:
                del self.recency[where]
                continue
            clocked = self.state.raw(p, key)["t"] if ticket_id in self.timed.get(p, {}) else None
            finished = clocked is not None and (clocked["status"] in LET_GO or bool(clocked.get("merged_into")))
            if (
                ticket_id in self.stale.get(p, ())
                or self.state.pending(p, key)
                or (clocked is not None and not finished)
            ):
                del self.recency[where]  # not now: to the back of the line
                self.recency[where] = None
                continue
            self.state.delete(p, key)
            del self.recency[where]
            self.timed.get(p, {}).pop(ticket_id, None)
            if clocked is not None and finished and self.state.get(p, THREAD + clocked["thread_key"]) == ticket_id:
                self.state.delete(p, THREAD + clocked["thread_key"])
            released += 1
        return released

    # ------------------------------------------------------------ messages
    async def _message_received(self, record: Record, unit: Unit) -> None:
        msg = MessageReceived.model_validate(record.data)
        await self._file(record.partition, msg, unit, now=record.timestamp, input_id=msg.message_id)

    async def _file_forwarded(self, record: Record, unit: Unit) -> None:
        cmd = FileMessage.model_validate(record.data)
        await self._file(
            record.partition,
            cmd.message,
            unit,
            now=record.timestamp,
            input_id=cmd.message.message_id,
            into=cmd.ticket_id,
        )

    async def _file(
        self, p: int, msg: MessageReceived, unit: Unit, *, now: datetime, input_id: str, into: str | None = None
    ) -> None:
        customer, new_links = self.customers.resolve(msg.customer.name, msg.customer.identities)
        if new_links:
            self._link(unit, customer.id, new_links, now)
        if into is None:
            msg = self._own_thread(p, msg, customer)
        target = into or await self._find(p, msg, customer)
        if target is not None and not self._local(p, target):
            if into is None:  # a quoted reference or a reply to another partition's ticket: filed there
                self.state.put(p, THREAD + msg.thread_key, target)
                cmd = FileMessage(command_id=f"file:{msg.message_id}", ticket_id=target, message=msg)
                unit.records.append(self._command_record(EventType.FILE_MESSAGE, cmd, target, now))
                return
            target = None  # forwarded here, but the ticket is not here (any more): a new one
        follows = None
        if target is not None:
            held = self._held(p, target)
            ticket = held.ticket
            if ticket.has_message(msg.message_id):
                return  # a redelivered message
            if not self._same_customer(ticket, customer):
                target = None  # someone else's ticket: references join only the customer's own tickets
            elif continues(ticket, msg, now=now, policy=self.threading):
                ticket.customer.tier = customer.tier  # the tier as of the customer's latest message
                for key in customer.identities:
                    if key not in ticket.customer.identities:
                        ticket.customer.identities.append(key)
                for key in customer.hints:
                    if key not in ticket.customer.hints and key not in ticket.customer.identities:
                        ticket.customer.hints.append(key)
                events = ticket.receive(msg, now=now)
                known = set(held.words)
                held.words += [w for w in search_terms_of(msg) if w not in known]
                self._changed(
                    p,
                    held,
                    unit,
                    events,
                    entry_id=msg.message_id,
                    input_id=input_id,
                    now=now,
                    thread_key=msg.thread_key,
                )
                return
            else:  # closed, or quiet for too long: the conversation goes on in a new ticket
                follows = ticket.id
                newer = self.state.get(p, THREAD + msg.thread_key) if into is not None else None
                if newer is not None and newer != ticket.id and self._local(p, newer):
                    await self._file(p, msg, unit, now=now, input_id=input_id, into=newer)
                    return
        new_id = ticket_id_for(msg.message_id, placed=lambda t: partition_of(t, self.partitions) == p)
        if self._local(p, new_id):
            return  # created by this very message before (a redelivery after its thread moved on)
        ticket, events = Ticket.open_from(msg, ticket_id=new_id, customer=customer, now=now, follows=follows)
        held = Held(ticket, words=search_terms_of(msg, ticket))
        self.state.put(p, TICKET + new_id, held)
        self.state.put(p, THREAD + msg.thread_key, new_id)
        self._changed(
            p,
            held,
            unit,
            events,
            entry_id=msg.message_id,
            input_id=input_id,
            now=now,
            thread_key=msg.thread_key,
            created=True,
        )
        await self._unpark(p, new_id, unit)

    async def _find(self, p: int, msg: MessageReceived, customer: CustomerInfo) -> str | None:
        """The ticket a message joins: one it quotes (the customer's own), its conversation's, or one
        whose mail it answers."""
        if msg.ticket_ref:
            if self._local(p, msg.ticket_ref):
                quoted = self._held(p, msg.ticket_ref).ticket
                if self.customers.current(quoted.customer.id) == customer.id:
                    return quoted.id
            elif partition_of(msg.ticket_ref, self.partitions) != p:
                return msg.ticket_ref  # its owner checks whose it is
        known = self.state.get(p, THREAD + msg.thread_key)
        if known is not None:
            return known
        # a new conversation that answers a mail we know (a mailer that dropped References): rare,
        # so a lookup is affordable here
        for ref in [msg.in_reply_to, *reversed(msg.references)]:
            if not ref:
                continue
            entry = await self.store.entry(inbound_message_id(msg.channel.value, ref))
            found = entry["ticket_id"] if entry else await self.store.ticket_of_external(msg.channel.value, ref)
            if found and (not self._local(p, found) or self._same_customer(self._held(p, found).ticket, customer)):
                return found  # a ticket of another partition: its owner checks whose it is
        return None

    def _same_customer(self, ticket: Ticket, customer: CustomerInfo) -> bool:
        return ticket.customer.id == customer.id or self.customers.current(ticket.customer.id) == customer.id

    def _own_thread(self, p: int, msg: MessageReceived, customer: CustomerInfo) -> MessageReceived:
        """A conversation (a mail thread, a chat session) whose ticket belongs to another customer is not
        this sender's to join — whoever knows a thread's Message-ID or session id could otherwise write
        into it: the sender's messages in it get a thread of their own, scoped to them."""
        known = self.state.get(p, THREAD + msg.thread_key)
        if known is None or not self._local(p, known) or self._same_customer(self._held(p, known).ticket, customer):
            return msg
        return msg.model_copy(update={"thread_key": f"{msg.thread_key}#{customer.id}"})

    async def _delivery_reported(self, record: Record, unit: Unit) -> None:
        """A provider's word on a message we sent, keyed by the provider's id: to the ticket's partition."""
        report = DeliveryReported.model_validate(record.data)
        ticket_id = await self.store.ticket_of_external(report.channel.value, report.provider_id)
        if ticket_id is None:
            log.info("a %s report for %s, which we did not send; ignored", report.channel, report.provider_id)
            return
        detail = report.provider_status + (f": {report.error}" if report.error else "")
        cmd = RecordDelivery(
            command_id=record.event["id"],
            ticket_id=ticket_id,
            provider_id=report.provider_id,
            state=report.state,
            detail=detail,
        )
        unit.records.append(self._command_record(EventType.RECORD_DELIVERY, cmd, ticket_id, record.timestamp))

    # ------------------------------------------------------------ commands
    async def _command(self, record: Record, unit: Unit) -> None:
        from shared.events import EVENT_TYPES  # the payload model of each command type

        # (only command types are routed here: every one is a TicketCommand)
        cmd = cast(TicketCommand, EVENT_TYPES[record.type].model_validate(record.data))
        p = record.partition
        if not self._local(p, cmd.ticket_id):
            if isinstance(cmd, TicketCommand) and cmd.request_id:
                self._outcome(
                    unit, cmd, 404, "not_found", f"ticket {cmd.ticket_id} does not exist", now=record.timestamp
                )
                return
            if isinstance(cmd, RecordDelivery):
                return  # the ticket is gone (purged)
            if self._park(record, cmd.ticket_id):
                return
            raise Rejected(f"ticket {cmd.ticket_id} does not exist")
        held = self._held(p, cmd.ticket_id)
        ticket = held.ticket
        if cmd.command_id in ticket.seen:  # applied before: say so again
            if isinstance(cmd, TicketCommand) and cmd.request_id:
                self._outcome(unit, cmd, 200, result=self._result(ticket, cmd, duplicate=True), now=record.timestamp)
            return
        try:
            events = self.decisions[type(cmd)](ticket, cmd, record.timestamp, unit)
        except _Purged:
            if isinstance(cmd, TicketCommand) and cmd.request_id:
                self._outcome(
                    unit, cmd, 202, result={"ticket_id": cmd.ticket_id, "status": "purged"}, now=record.timestamp
                )
            return
        except LifecycleError as exc:
            if isinstance(cmd, TicketCommand) and cmd.request_id:
                status = getattr(exc, "status", 409)
                code = {404: "not_found", 410: "gone"}.get(status, "invalid_transition")
                self._outcome(unit, cmd, status, code, str(exc), now=record.timestamp)
            else:
                log.info("%s of %s skipped: %s", record.type, cmd.ticket_id, exc)
            return
        ticket.remember(cmd.command_id)
        entry_id = cmd.message_id if isinstance(cmd, ReplyToTicket) else f"{cmd.command_id}:{ticket.id}"
        self._changed(p, held, unit, events, entry_id=entry_id, input_id=cmd.command_id, now=record.timestamp)
        if isinstance(cmd, TicketCommand) and cmd.request_id:
            self._outcome(
                unit,
                cmd,
                201 if isinstance(cmd, ReplyToTicket | AddTicketNote) else 200,
                result=self._result(ticket, cmd),
                now=record.timestamp,
            )

    def _assign(self, t: Ticket, cmd: AssignTicket, now: datetime, unit: Unit) -> list[Event]:
        return t.assign(cmd.agent_id, actor=cmd.actor, now=now, reason=cmd.reason, team=cmd.team)

    def _automate(self, t: Ticket, cmd: ApplyAutomation, now: datetime, unit: Unit) -> list[Event]:
        return t.automate(
            rules=cmd.rules,
            priority=cmd.priority,
            add_tags=cmd.add_tags,
            mark_spam=cmd.mark_spam,
            now=now,
            team=cmd.team,
            reply=cmd.reply,
            reply_id="out_" + stable_id(cmd.command_id, "reply", size=24),
            reply_source=cmd.reply_source,
        )

    def _reply(self, t: Ticket, cmd: ReplyToTicket, now: datetime, unit: Unit) -> list[Event]:
        return t.reply(
            agent_id=cmd.agent_id,
            text=cmd.text,
            message_id=cmd.message_id,
            now=now,
            html=cmd.html,
            attachments=cmd.attachments,
        )

    def _change_status(self, t: Ticket, cmd: ChangeTicketStatus, now: datetime, unit: Unit) -> list[Event]:
        was = t.status
        events = t.change_status(Status(cmd.status), actor=cmd.actor, now=now, until=cmd.until, substatus=cmd.substatus)
        if t.status == Status.resolved and was != Status.resolved:
            events += self._resolved(t, now)
        return events

    def _resolved(self, t: Ticket, now: datetime) -> list[Event]:
        """A resolution is confirmed with the customer: at once, or after the delay an admin set (`sweep`)."""
        if self.surveys is None or not self.csat_settings.applies(t.channel):
            return []
        if self.csat_settings.delay_s > 0:
            t.csat_due_at = now + timedelta(seconds=self.csat_settings.delay_s)
            return []
        return self.surveys.ask(t, now)

    def _ask_if_due(self, t: Ticket, now: datetime) -> list[Event]:
        if not t.csat_if_due(now):
            return []
        if self.surveys is None or not self.csat_settings.applies(t.channel):
            t.csat_due_at = None  # switched off meanwhile
            return []
        return self.surveys.ask(t, now)

    def _csat_answer(self, t: Ticket, cmd: RecordCsatAnswer, now: datetime, unit: Unit) -> list[Event]:
        return t.answer_csat(
            survey_id=cmd.survey_id, solved=cmd.solved, rating=cmd.rating, comment=cmd.comment, now=now
        )

    def _note(self, t: Ticket, cmd: AddTicketNote, now: datetime, unit: Unit) -> list[Event]:
        return t.add_note(author=cmd.author, text=cmd.text, note_id=cmd.note_id, now=now)

    def _priority(self, t: Ticket, cmd: SetTicketPriority, now: datetime, unit: Unit) -> list[Event]:
        return t.set_priority(Priority(cmd.priority), actor=cmd.actor, now=now)

    def _tags(self, t: Ticket, cmd: ChangeTicketTags, now: datetime, unit: Unit) -> list[Event]:
        return t.change_tags(add=cmd.add, remove=cmd.remove, actor=cmd.actor, now=now)

    def _unassign(self, t: Ticket, cmd: UnassignTicket, now: datetime, unit: Unit) -> list[Event]:
        return t.unassign(actor=cmd.actor, now=now)

    def _merge(self, t: Ticket, cmd: MergeTicket, now: datetime, unit: Unit) -> list[Event]:
        other = Ticket(
            id=cmd.other_id,
            channel=t.channel,
            customer=t.customer,
            thread_key="",
            created_at=now,
            updated_at=now,
            tags=cmd.other_tags,
            merged_from=cmd.other_merged_from,
            inbound_count=cmd.other_inbound,
        )
        return t.absorb(other, actor=cmd.actor, now=now, moved=cmd.moved_message_ids)

    def _close_merged(self, t: Ticket, cmd: CloseMergedTicket, now: datetime, unit: Unit) -> list[Event]:
        events = t.close_as_merged(cmd.survivor_id, actor=cmd.actor, now=now)
        unit.jobs.append(lambda: self.store.move_messages(t.id, cmd.survivor_id))
        return events

    def _split(self, t: Ticket, cmd: SplitTicket, now: datetime, unit: Unit) -> list[Event]:
        """The new ticket is created here too (its id is placed on this partition), in the same unit."""
        message = Message.model_validate(cmd.message)
        p = partition_of(t.id, self.partitions)
        new_id = ticket_id_for(
            f"split:{t.id}:{message.message_id}", placed=lambda i: partition_of(i, self.partitions) == p
        )
        events = t.split_off(message, new_id, actor=cmd.actor, now=now)
        new, created = Ticket.open_split(t, message, ticket_id=new_id, actor=cmd.actor, now=now)
        new.messages = []  # the message's journal entry moves to the new ticket (below)
        held = Held(new, words=search_terms(new) + query_terms(message.text))
        self.state.put(p, TICKET + new_id, held)
        self._changed(p, held, unit, created, entry_id=f"{cmd.command_id}:{new_id}", input_id=cmd.command_id, now=now)
        unit.jobs.append(lambda: self.store.repoint(message.message_id, new_id))
        return events

    def _purge(self, t: Ticket, cmd: PurgeTicket, now: datetime, unit: Unit) -> list[Event]:
        t.check_purgeable()
        self._drop(t, cmd, now, unit, reason="purge")
        raise _Purged

    def _erase(self, t: Ticket, cmd: EraseTicket, now: datetime, unit: Unit) -> list[Event]:
        """Its customer's data is being erased: gone like a purged ticket, whatever its status. What the
        customer left beyond their tickets is the erasure's (services/tickets/erasure.py), once for all."""
        self._drop(t, cmd, now, unit, reason="erasure")
        raise _Purged

    def _drop(self, t: Ticket, cmd: PurgeTicket | EraseTicket, now: datetime, unit: Unit, *, reason: str) -> None:
        p = partition_of(t.id, self.partitions)
        purged = TicketPurged(ticket_id=t.id, customer_id=t.customer.id, actor=cmd.actor, at=now, reason=reason)
        unit.records.append(
            event(
                topics.TICKETS_EVENTS,
                t.id,
                EventType.TICKET_PURGED,
                purged,
                source=self.source,
                subject=t.id,
                id_=stable_id(cmd.command_id, "purged", size=24),
                time=now,
            )
        )
        # the ticket is forgotten here; its journal and list document go once the event is out
        self.state.delete(p, TICKET + t.id)
        self.stale.get(p, set()).discard(t.id)
        self.timed.get(p, {}).pop(t.id, None)
        if self.state.get(p, THREAD + t.thread_key) == t.id:
            self.state.delete(p, THREAD + t.thread_key)
        unit.jobs.append(lambda: self._forget(t.id, now, leftovers=reason == "purge"))

    async def _forget(self, ticket_id: str, now: datetime, *, leftovers: bool = False) -> None:
        """The journal's entries go, the list document becomes a tombstone (no personal data); with
        `leftovers`, first what the ticket left elsewhere (its files, delivery records, reply ids), while
        the journal still says which files those are."""
        if leftovers and self.shredder is not None:
            refs = blob_refs(await self.store.entries_of([ticket_id]))
            await self.shredder.files([ticket_id], refs, reason="purge", now=now)
            await self.shredder.records([ticket_id])
        await self.store.forget(ticket_id)
        async with self.writing:
            await self.store.tombstone(ticket_id, now)

    def _delivery(self, t: Ticket, cmd: RecordDelivery, now: datetime, unit: Unit) -> list[Event]:
        message_id = cmd.message_id or next(
            (m for m, d in t.deliveries.items() if d.provider_id and d.provider_id == cmd.provider_id), None
        )
        if message_id is None:
            return []
        attempts = cmd.attempts or (t.deliveries[message_id].attempts if message_id in t.deliveries else 0)
        return t.record_delivery(
            message_id,
            state=DeliveryState(cmd.state),
            detail=cmd.detail,
            provider_id=cmd.provider_id,
            attempts=attempts,
            now=now,
            next_attempt_at=cmd.next_attempt_at,
        )

    def _suspect_duplicate(self, t: Ticket, cmd: SuspectDuplicate, now: datetime, unit: Unit) -> list[Event]:
        return t.suspect_duplicate(cmd.duplicate_of, score=cmd.score, signals=cmd.signals, actor="duplicates", now=now)

    def _result(self, t: Ticket, cmd: Any, duplicate: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = {
            "ticket_id": t.id,
            "status": t.status.value,
            "priority": t.priority,
            "assignee": t.assignee,
            "tags": list(t.tags),
        }
        if isinstance(cmd, ReplyToTicket):
            result["message_id"] = cmd.message_id
        if isinstance(cmd, AddTicketNote):
            result["note_id"] = cmd.note_id
        if isinstance(cmd, RecordCsatAnswer) and t.csat is not None:
            result["csat"] = t.csat.model_dump(mode="json", exclude={"message_id"})
        if isinstance(cmd, SplitTicket):
            message_id = cmd.message.get("message_id", "")
            p = partition_of(t.id, self.partitions)
            result["new_ticket_id"] = ticket_id_for(
                f"split:{t.id}:{message_id}", placed=lambda i: partition_of(i, self.partitions) == p
            )
        result["duplicate"] = duplicate
        return result

    # ------------------------------------------------------------ SLA marks
    async def _sla_event(self, record: Record, unit: Unit) -> None:
        sla = SlaTargetEvent.model_validate(record.data)
        p = record.partition
        if not self._local(p, sla.ticket_id):
            self._park(record, sla.ticket_id)  # its ticket's first message may still be replayed
            return  # purged meanwhile, or not ours
        held = self._held(p, sla.ticket_id)
        if record.event["id"] in held.ticket.seen:
            return
        if held.ticket.record_sla(
            sla.target.value, SLA_STATES[record.type], at=sla.at, due_at=sla.due_at, now=record.timestamp
        ):
            held.ticket.remember(record.event["id"])
            self._changed(
                p,
                held,
                unit,
                [],
                entry_id=f"{record.event['id']}:{sla.ticket_id}",
                input_id=record.event["id"],
                now=record.timestamp,
            )

    # ------------------------------------------------------------ lists
    async def _refresh_lists(self, record: Record, unit: Unit) -> None:
        cmd = RefreshLists.model_validate(record.data)
        p = record.partition

        async def write() -> None:
            written = await self.flush_docs({p}, everything=True, flush_state=False)
            outcome = CommandOutcome(
                request_id=cmd.request_id or cmd.command_id,
                ticket_id="",
                status=200,
                result={"partition": p, "written": written},
            )
            unit.records.append(
                event(
                    topics.TICKETS_OUTCOMES,
                    outcome.request_id,
                    EventType.COMMAND_OUTCOME,
                    outcome,
                    source=self.source,
                    subject=None,
                    id_=cmd.command_id,
                    time=record.timestamp,
                )
            )

        unit.jobs.append(write)

    async def flush_docs(
        self,
        partitions: set[int] | None = None,
        *,
        everything: bool = False,
        flush_state: bool = True,
        exclusive: Callable[[], Any] | None = None,
    ) -> int:
        """Write the list documents of tickets that changed (see DocPolicy; `everything`: all of them, a
        list is being read). With `exclusive` (the runner's lock) the documents are chosen and marked
        written under it and written without it, so batches go on meanwhile."""
        hold = exclusive or contextlib.nullcontext
        async with hold():
            now = self.clock()
            new: list[dict[str, Any]] = []
            changed: list[tuple[str, dict[str, Any], list[str]]] = []
            picked: list[tuple[int, str, int, int]] = []  # (partition, ticket, version written, words written)
            for p in list(partitions if partitions is not None else self.state.data):
                for ticket_id in list(self.stale.get(p, ())):
                    held = self.state.get(p, TICKET + ticket_id)
                    if held is None or held.doc_version >= held.ticket.version:
                        self.stale.get(p, set()).discard(ticket_id)
                        continue
                    t = held.ticket
                    if held.doc_version == 0:
                        filed = held.stale_since or t.created_at
                        if not everything and now - filed < self.docs.new_delay:
                            continue
                        new.append(list_document(t, list(held.words)))
                    elif everything or (
                        held.stale_since is not None and now - held.stale_since >= self.docs.changed_delay
                    ):
                        doc = list_document(t, [])
                        doc.pop("_id")
                        doc.pop("search")
                        changed.append((t.id, doc, list(held.words)))
                    else:
                        continue
                    picked.append((p, t.id, t.version, len(held.words)))
        if not picked:
            return 0
        async with self.writing:
            await self.store.write_docs(new, changed)
        async with hold():
            for p, ticket_id, version, words in picked:
                held = self.state.get(p, TICKET + ticket_id)
                if held is None or held.doc_version >= version:
                    continue
                held.doc_version, held.words = version, held.words[words:]
                if held.doc_version >= held.ticket.version:
                    held.stale_since = None
                    self.stale.get(p, set()).discard(ticket_id)
                self.state.touch(p, TICKET + ticket_id)
            if flush_state:
                await self.state.flush()
        return len(picked)

    # ------------------------------------------------------------ time-driven changes
    async def sweep(self) -> int:
        """Postponed tickets whose time came wake up, resolved ones the customer left alone close, and
        long-closed ones are let go of (their list document and journal keep them)."""
        now = self.clock()
        unit = Unit()
        changed = 0
        for p in list(self.state.data):
            timed = self.timed.get(p, {})
            for ticket_id in [i for i, due in timed.items() if due <= now]:
                key = TICKET + ticket_id
                held = self.state.get(p, key)
                if held is None:
                    timed.pop(ticket_id, None)
                    continue
                t = held.ticket
                events = (
                    t.wake_if_due(now) or self._ask_if_due(t, now) or t.close_if_quiet(now, after_s=self.auto_close_s)
                )
                if events:
                    input_id = stable_id("sweep", t.id, str(t.version))
                    self._changed(p, held, unit, events, entry_id=f"{input_id}:{t.id}", input_id=input_id, now=now)
                    changed += 1
                elif held.doc_version < t.version:
                    timed[ticket_id] = now + timedelta(seconds=5)  # let go of once its list document is written
                elif (t.status in LET_GO or t.merged_into) and now - t.updated_at >= self.docs.keep_closed:
                    self.state.delete(p, key)
                    timed.pop(t.id, None)
                    self.recency.pop((p, t.id), None)
                    if self.state.get(p, THREAD + t.thread_key) == t.id:
                        self.state.delete(p, THREAD + t.thread_key)
                else:
                    self._track(p, held)
        self.release()
        self._expire_parked(now, unit)
        if changed or self.state.dirty():
            await self.commit(unit)
        return changed

    auto_close_s: float = 72 * 3600

    # ------------------------------------------------------------ customers
    def _link(self, unit: Unit, customer_id: str, keys: list[str], now: datetime) -> None:
        change = CustomerChanged(customer_id=customer_id, identities=keys, at=now)
        self.customers.apply(change)
        unit.links += link_rows(change)
        unit.records.append(
            event(
                topics.TICKETS_EVENTS,
                customer_id,
                EventType.CUSTOMER_CHANGED,
                change,
                source=self.source,
                subject=customer_id,
                id_=stable_id("linked", customer_id, *keys, size=24),
                time=now,
            )
        )

    # ------------------------------------------------------------ commands that came before their ticket
    def _park(self, record: Record, ticket_id: str) -> bool:
        """A command (of another service: no one waits on an outcome) or an SLA event for a ticket of this
        partition that is not here. After a crash it can be the ticket's first message that is still to be
        replayed: a ticket's events go out before the changelog holds it, so routing may have assigned a
        ticket this process does not have yet. It waits in the changelog and is applied once the ticket is
        opened; one still waiting after PARK_FOR goes to the dead letters. False: not one to wait for (another
        partition's ticket, or one read back as purged)."""
        p, key = record.partition, PARKED + ticket_id
        if partition_of(ticket_id, self.partitions) != p or ticket_id in self.purged_now:
            return False
        waiting: list[dict[str, Any]] = list(self.state.get(p, key) or [])
        if any(w["topic"] == record.topic and w["offset"] == record.offset for w in waiting):
            return True
        value = record.raw.value if record.raw is not None else None
        waiting.append(
            {
                "topic": record.topic,
                "offset": record.offset,
                "key": record.key,
                "at": record.timestamp.isoformat(),
                "value": value.decode(errors="replace") if isinstance(value, bytes) else None,
            }
        )
        self.state.put(p, key, waiting)
        self.parked.setdefault(p, {}).setdefault(ticket_id, record.timestamp)
        log.info("%s for %s waits: the ticket is not here (yet)", record.type, ticket_id)
        return True

    @staticmethod
    def _parked_raw(p: int, kept: dict[str, Any]) -> Any:
        """The consumer record a parked command came as (what `as_record` and `dead_letter` read)."""
        return SimpleNamespace(
            topic=kept["topic"],
            partition=p,
            offset=kept["offset"],
            key=kept["key"].encode() if kept["key"] else None,
            value=(kept["value"] or "").encode(),
            timestamp=int(datetime.fromisoformat(kept["at"]).timestamp() * 1000),
            headers=None,
        )

    async def _unpark(self, p: int, ticket_id: str, unit: Unit) -> None:
        waiting = self.state.get(p, PARKED + ticket_id)
        if not waiting:
            return
        self.state.delete(p, PARKED + ticket_id)
        self.parked.get(p, {}).pop(ticket_id, None)
        for kept in waiting:
            raw = self._parked_raw(p, kept)
            record = as_record(raw)
            try:
                if isinstance(record, str):
                    raise Rejected(record)
                await self.handlers[record.type](record, unit)
            except (ValidationError, ValueError, Rejected, KeyError) as exc:
                unit.records.append(dead_letter(self._service, raw, f"{type(exc).__name__}: {exc}"[:2000]))

    def _expire_parked(self, now: datetime, unit: Unit) -> None:
        for p, tickets in self.parked.items():
            for ticket_id in [t for t, since in tickets.items() if now - since >= PARK_FOR]:
                del tickets[ticket_id]
                for kept in self.state.get(p, PARKED + ticket_id) or []:
                    reason = f"ticket {ticket_id} does not exist (waited for it {PARK_FOR.total_seconds():.0f} s)"
                    unit.records.append(dead_letter(self._service, self._parked_raw(p, kept), reason))
                self.state.delete(p, PARKED + ticket_id)

    @property
    def _service(self) -> str:
        return self.source.rsplit("/", 1)[-1]

    # ------------------------------------------------------------ internals
    def _local(self, p: int, ticket_id: str) -> bool:
        return (p, TICKET + ticket_id) in self.state

    def _held(self, p: int, ticket_id: str) -> Held:
        held = self.state.get(p, TICKET + ticket_id)
        assert held is not None
        return held

    def _changed(
        self,
        p: int,
        held: Held,
        unit: Unit,
        events: list[Event],
        *,
        entry_id: str,
        input_id: str,
        now: datetime,
        thread_key: str | None = None,
        created: bool = False,
    ) -> None:
        """A change of the ticket decided: its journal entry, its events, its new version."""
        ticket = held.ticket
        messages, notes, timeline = ticket.drain()
        if not (events or messages or notes or timeline):
            self.state.touch(p, TICKET + ticket.id)  # it remembers the input (`seen`)
            return
        for i, (type_, payload) in enumerate(events):
            unit.records.append(
                event(
                    topics.TICKETS_EVENTS,
                    ticket.id,
                    type_,
                    payload,
                    source=self.source,
                    subject=ticket.id,
                    id_=stable_id(input_id, ticket.id, type_, str(i), size=32),
                    time=now,
                )
            )
        ticket.version += 1
        if held.stale_since is None:
            # this process's clock, not the input's time: a backlog must not make every new ticket look
            # old enough to be written before its assignment (and then written again: an update)
            held.stale_since = self.clock()
        entry: dict[str, Any] = {
            "_id": entry_id,
            "ticket_id": ticket.id,
            "seq": ticket.version,
            "at": now,
            "messages": [m.model_dump(mode="json") for m in messages],
            "notes": [n.model_dump(mode="json") for n in notes],
            "timeline": [e.model_dump(mode="json") for e in timeline],
            "deliveries": {
                k: d.model_dump(mode="json")
                for k, d in ticket.deliveries.items()
                if any(e.type == "delivery" and e.details.get("message_id") == k for e in timeline)
            },
            "state": ticket.model_dump(mode="json", exclude={*Ticket.HISTORY, "seen", "deliveries"}),
        }
        if thread_key is not None and messages:
            entry["thread_key"] = thread_key
        if created:
            entry["customer_id"] = ticket.customer.id
        unit.entries.append(entry)
        self.state.touch(p, TICKET + ticket.id)
        self._track(p, held)

    def _outcome(
        self,
        unit: Unit,
        cmd: TicketCommand,
        status: int,
        code: str | None = None,
        message: str | None = None,
        *,
        result: dict[str, Any] | None = None,
        now: datetime,
    ) -> None:
        outcome = CommandOutcome(
            request_id=cmd.request_id or cmd.command_id,
            ticket_id=cmd.ticket_id,
            status=status,
            code=code,
            message=message,
            result=result or {},
        )
        unit.records.append(
            event(
                topics.TICKETS_OUTCOMES,
                outcome.request_id,
                EventType.COMMAND_OUTCOME,
                outcome,
                source=self.source,
                subject=cmd.ticket_id,
                id_=stable_id("outcome", cmd.command_id, size=24),
                time=now,
            )
        )

    def _command_record(self, type_: str, cmd: TicketCommand, ticket_id: str, now: datetime) -> Outgoing:
        return event(
            topics.TICKETS_COMMANDS,
            ticket_id,
            type_,
            cmd,
            source=self.source,
            subject=ticket_id,
            id_=stable_id(type_, cmd.command_id, size=24),
            time=now,
        )


class _Purged(Exception):
    """The ticket is gone: nothing more is recorded of the command."""


def search_terms_of(msg: MessageReceived, ticket: Ticket | None = None) -> list[str]:
    """The words a message adds to its ticket's text search (with the subject and name on a new ticket)."""
    words = query_terms(msg.text)
    if ticket is not None:
        words = [*query_terms(f"{ticket.subject or ''} {ticket.customer.name or ''}"), *words]
    return list(dict.fromkeys(words))[:2000]
