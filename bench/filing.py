"""How fast the tickets service files messages as the store grows, on the project's own
FerretDB (SQLite backend), with and without the `_id` lookup index deskstream adds to
FerretDB's SQLite tables (shared/mongo.py `index_lookups`) — both in one run, so the
ratio holds whatever the machine.

    .venv/bin/python -m bench.filing [--tickets 3000] [--step 1000]

Each message is a new customer's first chat message (a new ticket: customer, identity,
thread, ticket with its outbox, message index), filed through TicketService exactly as the
Kafka handler does; publishing is a no-op so only the store is measured. Prints messages/s
per step and writes bench/results-filing.json."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.tickets.service import TicketService  # noqa: E402
from services.tickets.store import TicketStore  # noqa: E402
from shared.events import Channel, CustomerRef, Identity, MessageReceived, utcnow  # noqa: E402
from shared.mongo import SQLITE_DIR_ENV, Mongo  # noqa: E402
from shared.outbox import Outbox  # noqa: E402
from tests.conftest import load_stackctl  # noqa: E402

STATE = ROOT / ".state" / "bench-filing"
PORTS = {"kafka_port": 22092, "controller_port": 22093, "mongo_port": 22017}


async def _publish(topic, event, key):
    return None


def message(i: int) -> MessageReceived:
    n = uuid.uuid4().hex[:12]
    now = utcnow()
    return MessageReceived(message_id=f"b-{n}", channel=Channel.chat, external_id=f"b-{n}", thread_key=f"chat:{n}",
                           customer=CustomerRef(name=f"Customer {i}", identities=[Identity(kind="chat", value=n)]),
                           text="Where is my order? " * 20, sent_at=now, received_at=now)


async def run(url: str, database: str, indexed: bool, total: int, step: int) -> list[dict]:
    mongo = Mongo(url, database, app_name="bench-filing")
    await mongo.detect()
    store = TicketStore(mongo)
    await store.ensure_indexes()
    if indexed:
        await mongo.index_lookups()
    service = TicketService(store=store, outbox=Outbox(store.tickets, _publish), source="bench")
    rows, done = [], 0
    while done < total:
        t0 = time.perf_counter()
        for _ in range(step):
            await service.file_message(message(done))
            done += 1
        rows.append({"tickets": done, "msgs_per_s": round(step / (time.perf_counter() - t0), 1)})
        print(f"  {'with' if indexed else 'without'} the index: {done:6d} tickets, "
              f"{rows[-1]['msgs_per_s']:7.1f} msg/s over the last {step}", flush=True)
    await mongo.client.drop_database(database)
    mongo.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=3000)
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--skip-unindexed", action="store_true", help="only measure with the index")
    args = parser.parse_args()
    ctl = load_stackctl()
    infra = ctl.infra_up(state_dir=STATE, quiet=True, **PORTS)
    os.environ[SQLITE_DIR_ENV] = str(STATE / "ferretdb-data")
    try:
        with_index = asyncio.run(run(infra.mongodb_url, "bench_indexed", True, args.tickets, args.step))
        without = [] if args.skip_unindexed else asyncio.run(
            run(infra.mongodb_url, "bench_plain", False, args.tickets, args.step))
    finally:
        ctl.clean(state_dir=STATE, quiet=True)
    result = {"tickets": args.tickets, "step": args.step, "with_index": with_index, "without_index": without}
    if without:
        result["ratio_at_end"] = round(with_index[-1]["msgs_per_s"] / without[-1]["msgs_per_s"], 1)
        print(f"at {args.tickets} tickets: {result['ratio_at_end']}x faster with the index")
    (ROOT / "bench" / "results-filing.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
