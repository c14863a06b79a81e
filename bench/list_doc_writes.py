"""What FerretDB 1.24 charges to keep a ticket's list document current, per document: inserting new
ones, and the ways of rewriting a changed one (update, replace, delete and insert), on the real
`tickets` collection with the indexes the tickets service adds (its SQL indexes and the `_id`
lookup index), prefilled with 20,000 documents. CPU is FerretDB's own, from /proc.

    flock /tmp/deskstream-bench.lock .venv/bin/python -m bench.list_doc_writes

Starts its own Kafka and FerretDB in `.state/listcost` (FerretDB on port 23117) and cleans them up afterwards."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
STATE = ROOT / ".state" / "listcost"
WORDS = "hello my order has not arrived yet and the tracking page changed for three days".split()


def ferretdb_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(mongodb_url: str, pid: int, prefill: int, sample: int) -> dict[str, Any]:
    from pymongo import DeleteOne, ReplaceOne, UpdateOne

    from services.tickets.domain import CustomerInfo, Ticket
    from services.tickets.store import TicketStore, list_document
    from shared.mongo import Mongo
    from shared.storage import Storage

    def ticket(i: int) -> Ticket:
        now = datetime.now(UTC)
        return Ticket(id=f"TK-{i:012d}", status="new", priority="normal", channel="chat",
                      customer=CustomerInfo(id=f"CU-{i}", name=f"Visitor {i}", identities=[f"chat:v{i}"]),
                      thread_key=f"chat:s{i}", created_at=now, updated_at=now, version=2)

    mongo = Mongo(mongodb_url, "listcost", app_name="list-doc-writes")
    await mongo.detect()
    storage = Storage(mongo)
    store = TicketStore(storage)
    await mongo.create_collections(["tickets", "ticket_journal"])
    await mongo.index_lookups()
    await store.ensure_indexes()
    coll = store.tickets
    out: dict[str, Any] = {}
    c0, t0 = ferretdb_cpu(pid), time.perf_counter()
    for b in range(0, prefill, 100):
        await storage.insert_batch(coll, [list_document(ticket(i), [*WORDS, str(i)]) for i in range(b, b + 100)])
    out["insert_many of 100"] = {"ferretdb_ms_per_doc": round(1000 * (ferretdb_cpu(pid) - c0) / prefill, 3),
                                 "docs_per_s": round(prefill / (time.perf_counter() - t0))}

    def key(i: int) -> str:
        return f"TK-{i:012d}"

    async def update(ids: list[int]) -> None:
        await coll.bulk_write([UpdateOne({"_id": key(i)}, {"$set": {"assignee": "a1", "version": 3}}) for i in ids],
                              ordered=False)

    async def update_words(ids: list[int]) -> None:
        await coll.bulk_write([UpdateOne({"_id": key(i)}, {"$set": {"assignee": "a2", "version": 4},
                                                          "$addToSet": {"search": {"$each": ["x", "y"]}}})
                               for i in ids], ordered=False)

    async def replace(ids: list[int]) -> None:
        await coll.bulk_write([ReplaceOne({"_id": key(i)}, list_document(ticket(i), WORDS)) for i in ids],
                              ordered=False)

    async def delete_insert(ids: list[int]) -> None:
        await coll.bulk_write([DeleteOne({"_id": key(i)}) for i in ids], ordered=False)
        await coll.insert_many([list_document(ticket(i), WORDS) for i in ids], ordered=False)

    async def find(ids: list[int]) -> None:
        for i in ids:
            await coll.find_one({"_id": key(i)})

    ways: list[tuple[str, Callable[[list[int]], Awaitable[None]]]] = [
        ("update $set, bulks of 50", update), ("update $set + $addToSet, bulks of 50", update_words),
        ("replace, bulks of 50", replace), ("delete bulk of 50 + insert_many of 50", delete_insert),
        ("find_one by _id", find)]
    for name, way in ways:
        ids = random.sample(range(prefill), sample)
        c0, t0 = ferretdb_cpu(pid), time.perf_counter()
        for k in range(0, sample, 50):
            await way(ids[k:k + 50])
        out[name] = {"ferretdb_ms_per_doc": round(1000 * (ferretdb_cpu(pid) - c0) / sample, 3),
                     "docs_per_s": round(sample / (time.perf_counter() - t0))}
        print(f"{name:40s} {out[name]['ferretdb_ms_per_doc']:6.3f} ms FerretDB CPU a document, "
              f"{out[name]['docs_per_s']:5d} documents/s", flush=True)
    await mongo.client.drop_database("listcost")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefill", type=int, default=20_000)
    parser.add_argument("--sample", type=int, default=500)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-list-doc-writes.json")
    args = parser.parse_args()
    from deploy.local import stack as ctl

    os.environ.pop("MONGODB_URL", None)
    ctl.clean(state_dir=STATE, quiet=True)
    try:
        infra = ctl.infra_up(state_dir=STATE, kafka_port=23192, controller_port=23193, mongo_port=23117, quiet=True)
        pid = int(ctl.StatePaths.of(STATE).pid("ferretdb").read_text().split()[0])
        os.environ["DESKSTREAM_FERRETDB_SQLITE_DIR"] = str(ctl.StatePaths.of(STATE).ferretdb_data)
        out = asyncio.run(measure(infra.mongodb_url, pid, args.prefill, args.sample))
    finally:
        ctl.clean(state_dir=STATE, quiet=True)
    out["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
