"""One fixed-rate step of `make bench`'s load on the bench stack, for before/after comparisons of one
change: CPU of every process per accepted message, database commands, each consumer group's lag and
batches, and optionally a py-spy profile of some processes over the step.

    flock /tmp/deskstream-bench.lock .venv/bin/python -m bench.steady --rate 300 --seconds 40 \\
        --fresh --warmup 40 [--spy tickets routing] [--instances 1] [--out steady.json]

Starts (or reuses) the `make bench` stack in `.state/bench`; `--fresh` cleans it first."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import run as B  # noqa: E402
from deploy.local import stack as stackctl  # noqa: E402
from tests.chaos.run import online_agents  # noqa: E402

BATCHES = re.compile(r'^deskstream_stream_batch_records_(count|sum)\{processor="([^"]+)"\} (\S+)$', re.M)


async def batches(ctl: Any) -> dict[str, dict[str, float]]:
    """Per process and stream processor: batches so far and the records in them."""
    out: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for name, url in B.instance_urls(ctl).items():
            try:
                text = (await http.get(f"{url}/metrics")).text
            except httpx.HTTPError:
                continue
            for kind, processor, n in BATCHES.findall(text):
                out.setdefault(f"{name}:{processor}", {})[kind] = float(n)
    return out


async def measure(args: argparse.Namespace, ctl: Any, stack: Any) -> dict[str, Any]:
    urls = stack.service_urls
    await online_agents(urls["routing"], B.TOKEN, dict.fromkeys(B.AGENTS, B.CAPACITY))
    if args.dead_webhook:  # a subscriber to every event that never answers (nothing listens on port 9)
        async with httpx.AsyncClient(base_url=urls["tickets"], headers={"Authorization": f"Bearer {B.TOKEN}"}) as http:
            r = await http.put("/v1/webhooks/dead", json={"url": "http://127.0.0.1:9/hook"})
            r.raise_for_status()
    lag = B.Lag(stack.kafka_bootstrap)
    await lag.start()
    try:
        if args.warmup:
            print(f"warm-up: {args.warmup:g} s at 150 msg/s", flush=True)
            await B.step(ctl, urls, lag, 150, args.warmup)
            await lag.drain(60)
        pids = B.processes(ctl)
        spies = [subprocess.Popen([str(ROOT / ".venv" / "bin" / "py-spy"), "record", "-r", "50", "-f", "raw",
                                   "-d", str(int(args.seconds - 5)), "-o", f"{args.spy_dir}/spy-{name}.txt",
                                   "-p", str(pids[name])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for name in args.spy]
        before = await batches(ctl)
        memory: list[dict[str, Any]] = []

        async def sample_memory() -> None:  # every process's resident MB over the step (--rss)
            t = 0.0
            while True:
                memory.append({"s": t, **B.rss(pids)})
                await asyncio.sleep(args.rss)
                t += args.rss

        sampler = asyncio.create_task(sample_memory()) if args.rss else None
        result = await B.step(ctl, urls, lag, args.rate, args.seconds)
        if sampler is not None:
            sampler.cancel()
            await lag.drain(60)
            memory.append({"s": "drained", **B.rss(pids)})
            result["rss_mb"] = memory
        after = await batches(ctl)
        for spy in spies:
            spy.wait()
    finally:
        await lag.stop()
    result["batches"] = {k: {"batches": v.get("count", 0) - before.get(k, {}).get("count", 0),
                             "records": v.get("sum", 0) - before.get(k, {}).get("sum", 0)} for k, v in after.items()}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--warmup", type=float, default=40, help="seconds at 150 msg/s first (0: none)")
    parser.add_argument("--fresh", action="store_true", help="clean the bench stack first")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--spy", nargs="*", default=[], help="process names to profile with py-spy (tickets, routing-2…)")
    parser.add_argument("--spy-dir", default=".")
    parser.add_argument("--rss", type=float, default=0, help="sample every process's resident memory this often (s)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--dead-webhook", action="store_true",
                        help="a webhook subscription to every event whose receiver is down (issue 18's check)")
    args = parser.parse_args()
    B.INSTANCES = args.instances
    ctl = stackctl
    os.environ.update({"DESKSTREAM_API_TOKEN": B.TOKEN, "DESKSTREAM_CHAT_SECRET": B.CHAT_SECRET,
                       "MONGODB_DATABASE": "bench", "INGEST_RATE_LIMIT_PER_MIN": "0",
                       "ROUTING_OFFLINE_GRACE_S": "3600", "WEBHOOKS_ALLOW_PRIVATE": "1"})
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL", "SMTP_URL"):
        os.environ.pop(name, None)
    if args.fresh:
        ctl.clean(state_dir=B.STATE, quiet=True)
    stack = ctl.up(state_dir=B.STATE, port_offset=B.OFFSET, instances=args.instances, quiet=True, **B.PORTS)
    result = asyncio.run(measure(args, ctl, stack))
    keys = ("accepted", "errors", "answered_per_s", "ingest_response_p99_ms", "lag_max", "lag_at_end", "lag_at_end_s_per_group",
            "lag_slope_msgs_per_s", "kept_up", "cpu_ms_per_msg", "ferretdb_cpu_ms_per_msg", "db_commands_per_msg",
            "db_documents_per_msg")
    print(json.dumps({k: result[k] for k in keys}, indent=1))
    print("CPU ms per message, all processes:", round(sum(result["cpu_ms_per_msg"].values()), 2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
