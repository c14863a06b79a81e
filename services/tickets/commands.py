"""How the HTTP API changes a ticket: it sends a command to the ticket's partition on
`tickets.commands` and waits for the owning process's outcome on `tickets.outcomes`.

Whichever tickets process a request lands on, the change is made by the one process that owns the
ticket, in order with the customer's messages and routing's assignments; the answer comes once the
change is journaled, so the next read — on any process — sees it. Every process reads all
outcomes (one partition, from its end) and picks out its own by request id."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from shared import topics
from shared.events import CommandOutcome, EventType, RefreshLists, TicketCommand, stable_id
from shared.kafka import Producer, event
from shared.stream import Tail

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The ticket's owner did not answer in time (it may be taking over the partition): try again."""


class Pending(Unavailable):
    """The command is on Kafka (it will be applied) but its owner has not answered yet: retrying it
    under a new key would apply it twice."""


class CommandBus:
    def __init__(self, producer: Producer, bootstrap_servers: str, *, source: str, timeout_s: float = 10.0) -> None:
        self.producer = producer
        self.bootstrap_servers = bootstrap_servers
        self.source = source
        self.timeout_s = timeout_s
        self.instance = uuid.uuid4().hex[:12]
        self.partitions = 6  # of tickets.commands; learnt at start
        self._waiting: dict[str, asyncio.Future[CommandOutcome]] = {}
        self.ready = asyncio.Event()

    async def send(self, type_: str, command: TicketCommand) -> CommandOutcome:
        """Send `command` (its `request_id` is set here) and return its outcome."""
        await asyncio.wait_for(self.ready.wait(), self.timeout_s)
        command.request_id = f"{self.instance}:{uuid.uuid4().hex}"
        future = self._expect(command.request_id)
        record = event(
            topics.TICKETS_COMMANDS,
            command.ticket_id,
            type_,
            command,
            source=self.source,
            subject=command.ticket_id,
            id_=stable_id(type_, command.command_id, command.request_id, size=24),
            time=datetime.now(UTC),
        )
        try:
            await self.producer.send_many([record])
        except Exception as exc:
            self._waiting.pop(command.request_id, None)
            raise Unavailable(
                f"ticket {command.ticket_id}: the command could not be sent ({type(exc).__name__})"
            ) from exc
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError as exc:
            raise Pending(f"ticket {command.ticket_id}: no answer within {self.timeout_s:g} s") from exc
        finally:
            self._waiting.pop(command.request_id, None)

    async def refresh_lists(self) -> None:
        """Every partition writes its pending ticket changes to the lists, and says when it has."""
        await asyncio.wait_for(self.ready.wait(), self.timeout_s)
        requests = []
        for p in range(self.partitions):
            request_id = f"{self.instance}:{uuid.uuid4().hex}"
            cmd = RefreshLists(command_id=request_id, ticket_id="", request_id=request_id)
            requests.append(
                (
                    self._expect(request_id),
                    event(
                        topics.TICKETS_COMMANDS,
                        None,
                        EventType.REFRESH_LISTS,
                        cmd,
                        source=self.source,
                        subject=None,
                        id_=request_id,
                        time=datetime.now(UTC),
                        partition=p,
                    ),
                )
            )
        try:
            await self.producer.send_many([r for _, r in requests])
            await asyncio.wait_for(asyncio.gather(*(f for f, _ in requests)), self.timeout_s)
        except TimeoutError:
            log.warning(
                "not every partition refreshed the lists within %g s; answering with what is written", self.timeout_s
            )
        finally:
            for future, _ in requests:
                future.cancel()

    def _expect(self, request_id: str) -> asyncio.Future[CommandOutcome]:
        future: asyncio.Future[CommandOutcome] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def tail(self) -> Tail:
        """Every outcome from the end of the topic on (a runtime loop)."""
        tail = Tail(
            name=f"tickets-outcomes-{self.instance}",
            topic=topics.TICKETS_OUTCOMES,
            bootstrap_servers=self.bootstrap_servers,
            handlers={EventType.COMMAND_OUTCOME: self._resolve},
        )
        self.ready = tail.ready
        return tail

    def _resolve(self, data: dict) -> None:
        outcome = CommandOutcome.model_validate(data)
        future = self._waiting.get(outcome.request_id)
        if future is not None and not future.done():
            future.set_result(outcome)
