"""The tickets service's writes on FerretDB, before/after in one run: each variant (the working
tree, and `--baseline <commit>` extracted with `git archive`) files N first messages of new
customers and then applies one assignment to each ticket, through TicketService exactly as the
Kafka handlers do (publishing stubbed), in a process and database of its own on the same FerretDB.
Prints messages a second and database commands per message for each.

    flock /tmp/deskstream-bench.lock .venv/bin/python -m bench.ticket_writes --baseline <commit> [--messages 400]

Writes bench/results-ticket-writes.json."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".state" / "bench-writes"
PORTS = {"kafka_port": 26092, "controller_port": 26093, "mongo_port": 26017}


# ------------------------------------------------------------------ the child: one variant's code
async def child(url: str, database: str, n: int) -> dict:
    from pymongo import monitoring

    class Count(monitoring.CommandListener):
        total = 0

        def started(self, event):
            Count.total += 1

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    monitoring.register(Count())
    from services.tickets.service import TicketService
    from services.tickets.store import TicketStore
    from shared.events import AssignTicket, Channel, CustomerRef, Identity, MessageReceived, utcnow
    from shared.mongo import Mongo
    from shared.outbox import Outbox

    async def publish(topic, event, key):
        return None

    def message(i: int) -> MessageReceived:
        tag = uuid.uuid4().hex[:12]
        now = utcnow()
        return MessageReceived(message_id=f"w-{tag}", channel=Channel.chat, external_id=f"w-{tag}",
                               thread_key=f"chat:{tag}", text="Where is my order? " * 20, sent_at=now, received_at=now,
                               customer=CustomerRef(name=f"Customer {i}", identities=[Identity(kind="chat", value=tag)]))

    mongo = Mongo(url, database, app_name="bench-writes")
    await mongo.detect()
    store = TicketStore(mongo)
    await store.ensure_indexes()
    await mongo.index_lookups()
    service = TicketService(store=store, outbox=Outbox(store.tickets, publish), source="bench")
    for i in range(20):  # warm
        await service.file_message(message(i))
    commands, started = Count.total, time.perf_counter()
    tickets = [await service.file_message(message(i)) for i in range(n)]
    filed_s = time.perf_counter() - started
    filing_commands = Count.total - commands
    commands, started = Count.total, time.perf_counter()
    for i, ticket in enumerate(tickets):
        await service.apply_command(AssignTicket(command_id=f"assign-{i}", ticket_id=ticket, agent_id="agent-1"))
    assigned_s = time.perf_counter() - started
    assign_commands = Count.total - commands
    await mongo.client.drop_database(database)
    mongo.close()
    import services

    return {"code": str(Path(services.__file__).parent.parent), "messages": n, "filed_per_s": round(n / filed_s, 1), "assigned_per_s": round(n / assigned_s, 1),
            "filed_and_assigned_per_s": round(n / (filed_s + assigned_s), 1),
            "db_commands_per_filing": round(filing_commands / n, 2), "db_commands_per_assignment": round(assign_commands / n, 2)}


# ------------------------------------------------------------------ the parent
def run_variant(name: str, code: Path, url: str, n: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code), DESKSTREAM_FERRETDB_SQLITE_DIR=str(STATE / "ferretdb-data"))
    database = f"writes_{uuid.uuid4().hex[:8]}"
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", url, database, str(n)],
                         cwd=code, env=env, check=True, capture_output=True, text=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(measured.pop("code")).resolve() != code.resolve():  # the editable install must not win over PYTHONPATH
        raise RuntimeError(f"{name} ran other code than {code}")
    result = {"variant": name, **measured}
    print(f"  {name:12s} filed {result['filed_per_s']:6.1f}/s ({result['db_commands_per_filing']} db commands each), "
          f"assigned {result['assigned_per_s']:6.1f}/s ({result['db_commands_per_assignment']} each), "
          f"both {result['filed_and_assigned_per_s']:6.1f}/s", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="also measure this commit (before/after)")
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2, help="alternate the variants this many times")
    parser.add_argument("--child", nargs=3, metavar=("URL", "DATABASE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, database, n = args.child
        print(json.dumps(asyncio.run(child(url, database, int(n)))))
        return 0
    sys.path.insert(0, str(ROOT))
    from bench.ingest import extract  # the baseline's services and shared, from `git archive`
    from tests.conftest import load_stackctl

    ctl = load_stackctl()
    ctl.clean(state_dir=STATE, quiet=True)
    infra = ctl.infra_up(state_dir=STATE, quiet=True, **PORTS)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            variants = [("working tree", ROOT)]
            if args.baseline:
                sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline],
                                     check=True, capture_output=True, text=True).stdout.strip()
                variants.insert(0, (f"@{sha}", extract(args.baseline, Path(tmp))))
            for _ in range(args.rounds):  # alternated, so drift in the machine's load hits both
                for name, code in variants:
                    results.append(run_variant(name, code, infra.mongodb_url, args.messages))
    finally:
        ctl.clean(state_dir=STATE, quiet=True)
    summary = {}
    for name, _ in variants:
        mine = [r for r in results if r["variant"] == name]
        summary[name] = {k: round(sum(r[k] for r in mine) / len(mine), 2) for k in mine[0] if k != "variant"}
    if len(summary) == 2:
        before, after = summary.values()
        summary["ratio_both_per_s"] = round(after["filed_and_assigned_per_s"] / before["filed_and_assigned_per_s"], 2)
        print(f"after / before (filed and assigned per second): {summary['ratio_both_per_s']}x")
    (ROOT / "bench" / "results-ticket-writes.json").write_text(json.dumps({"runs": results, "mean": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
