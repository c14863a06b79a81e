"""Ingest alone: messages a second for email and chat, over real HTTP into real Kafka, and what
parsing and normalising one message costs in-process.

What it does, per variant (the working tree, and optionally an earlier commit as the baseline):

1. starts Kafka and FerretDB on a private stack (its own state dir and ports) once;
2. starts that variant's ingest service as its own process (`python -m services.ingest`, one
   uvicorn worker, as deployed) on them;
3. posts `--messages` mails (about 1 KB each, realistic MIME: plain, multipart/alternative with
   HTML, replies with quoted history, a few with a small PDF, some Arabic in windows-1256) and
   `--messages` chat messages with `--concurrency` requests in flight (httpx AsyncClient, one
   keep-alive connection each), after `--warmup` unmeasured ones; every answer must be 202, and
   the records that landed on `ingest.messages` are counted from the topic's end offsets;
4. in a separate process on that variant's code, times the normaliser alone over the same
   bodies (best of three passes): body parsing, MIME, charset, HTML, quoting, language, and the
   record's encoding for Kafka — everything the endpoint does before it publishes.

Results: a table on stdout and `--out` (JSON). The client runs on the same machine as the
service, Kafka and FerretDB, so HTTP numbers are what one ingest process does while sharing it.

    flock /tmp/deskstream-bench.lock .venv/bin/python -m bench.ingest
    flock /tmp/deskstream-bench.lock .venv/bin/python -m bench.ingest --baseline <commit>  # before/after
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STACKCTL = [sys.executable, str(ROOT / "deploy" / "local" / "stackctl.py")]
TOPIC = "ingest.messages"
SENDERS = 500  # distinct customers: a realistic spread, and each stays far under the rate limit

# ------------------------------------------------------------------ the corpus

ENGLISH = ["Hello, my order {n} has not arrived yet and the tracking page has not changed for three days.",
           "I was charged twice for order {n}. Could you refund the second payment, please?",
           "The lamp in order {n} arrived broken: the shade is cracked. I would like a replacement.",
           "Can I change the delivery address for order {n}? I will be away next week."]
ARABIC = ["مرحبا، طلبي رقم {n} لم يصل بعد. متى سيتم التوصيل؟",
          "تم خصم المبلغ مرتين للطلب {n}، أرجو استرداد الدفعة الثانية."]
SIGNATURE = "\n\n--\nAna López\nSent from my phone"


def _body(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(ENGLISH).format(n=n) for _ in range(rng.randint(2, 4)))


def emails(count: int, run: str, seed: int = 7) -> list[bytes]:
    """About 1 KB each: 45% plain, 25% multipart/alternative, 15% replies quoting the earlier
    mail, 10% Arabic in windows-1256, 5% with a small PDF attached."""
    rng = random.Random(seed)
    kinds = rng.choices(["plain", "alternative", "reply", "arabic", "attachment"], [45, 25, 15, 10, 5], k=count)
    out = []
    for i, kind in enumerate(kinds):
        customer = i % SENDERS
        msg = EmailMessage()
        msg["Return-Path"] = f"<customer{customer}@mail.example>"
        msg["Received"] = (f"from mx.mail.example (mx.mail.example [192.0.2.{i % 250}]) by mx.shop.example "
                           f"with ESMTPS id {run}{i}; Mon, 23 Nov 2026 09:00:01 +0000")
        msg["From"] = f"Customer {customer} <customer{customer}@mail.example>"
        msg["To"] = "Support <support@shop.example>"
        msg["Subject"] = f"Order {100000 + i}: where is it?"
        msg["Message-ID"] = f"<{run}.{i}@mail.example>"
        msg["Date"] = format_datetime(datetime(2026, 11, 23, 9, i % 60, tzinfo=UTC))
        text = _body(rng, 100000 + i)
        if kind == "plain":
            msg.set_content(text + SIGNATURE)
        elif kind == "alternative":
            msg.set_content(text + SIGNATURE)
            msg.add_alternative(f"<html><body><p>{text}</p><p style='color:#888'>Ana López<br>"
                                f"<a href='https://shop.example/orders/{i}'>my order</a></p></body></html>",
                                subtype="html")
        elif kind == "reply":
            msg["In-Reply-To"] = f"<{run}.{i - 1}@shop.example>"
            msg["References"] = f"<{run}.root{customer}@mail.example> <{run}.{i - 1}@shop.example>"
            msg.replace_header("Subject", "Re: " + msg["Subject"])
            quoted = "\n".join("> " + line for line in _body(rng, i).split(". "))
            msg.set_content(f"Thanks, but it still has not arrived.\n\nOn Mon, 23 Nov 2026 at 09:00, Support "
                            f"<support@shop.example> wrote:\n{quoted}")
        elif kind == "arabic":
            msg.set_content(" ".join(rng.choice(ARABIC).format(n=i) for _ in range(4)), charset="windows-1256")
        else:
            msg.set_content(text)
            msg.add_attachment(b"%PDF-1.7\n" + rng.randbytes(300), maintype="application", subtype="pdf",
                               filename=f"invoice-{i}.pdf")
        out.append(msg.as_bytes())
    return out


def chats(count: int, run: str, seed: int = 11) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        visitor = i % SENDERS
        customer: dict[str, Any] = {"name": f"Visitor {visitor}", "visitor_id": f"{run}-v{visitor}"}
        if i % 3 == 0:
            customer["email"] = f"customer{visitor}@mail.example"
        out.append(json.dumps({
            "session_id": f"{run}-s{visitor}-{i}", "message_id": f"{run}-m{i}", "customer": customer,
            "text": rng.choice(ENGLISH).format(n=i) if i % 7 else rng.choice(ARABIC).format(n=i),
            "sent_at": "2026-11-23T10:00:00Z"}).encode())
    return out


CHANNELS = {"email": ("/v1/inbound/email", "message/rfc822", emails),
            "chat": ("/v1/inbound/chat", "application/json", chats)}

# ------------------------------------------------------------------ in-process cost (run in the variant's code)


def inproc(bodies_file: str, passes: int = 3) -> dict[str, Any]:
    """µs a message for each channel's normaliser and for its record's encoding; best of `passes`."""
    from services.ingest.bodies import parse_json
    from services.ingest.channels.chat import ChatInbound, normalise_chat
    from services.ingest.channels.mail import normalise_email
    from services.ingest.domain import fit_for_kafka
    from shared.events import EventType, make_event

    bodies = json.loads(Path(bodies_file).read_text())
    now = datetime.now(UTC)

    def normalise(channel: str, raw: bytes):
        if channel == "email":
            return normalise_email(raw, received_at=now, max_blob_bytes=10 * 1024 * 1024).message
        return normalise_chat(parse_json(raw, ChatInbound), received_at=now)

    def encode(message) -> bytes:
        message = fit_for_kafka(message)
        event = make_event(EventType.MESSAGE_RECEIVED, message, source="bench", subject=message.message_id,
                           id_=message.message_id)
        return json.dumps(event.model_dump(mode="json")).encode()

    results = {}
    for channel, encoded in bodies.items():
        raws = [r.encode("latin-1") for r in encoded]
        parse_best = encode_best = float("inf")
        for _ in range(passes):
            start = time.perf_counter()
            messages = [normalise(channel, raw) for raw in raws]
            parse_best = min(parse_best, time.perf_counter() - start)
            start = time.perf_counter()
            for message in messages:
                encode(message)
            encode_best = min(encode_best, time.perf_counter() - start)
        n = len(raws)
        results[channel] = {"normalise_us": round(parse_best / n * 1e6, 1), "encode_us": round(encode_best / n * 1e6, 1),
                            "per_core_msgs_per_s": round(n / (parse_best + encode_best))}
    return results


def inproc_in(code_dir: Path, bodies: dict[str, list[bytes]]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({c: [b.decode("latin-1") for b in raws] for c, raws in bodies.items()}, f)
    try:
        env = dict(os.environ, PYTHONPATH=str(code_dir))
        code = ("import json, sys, services.ingest; sys.path.insert(0, sys.argv[2]); from ingest import inproc; "
                "assert services.ingest.__file__.startswith(sys.argv[3]), services.ingest.__file__; "
                "print(json.dumps(inproc(sys.argv[1])))")
        out = subprocess.run([sys.executable, "-c", code, f.name, str(ROOT / "bench"), str(code_dir)],
                             cwd=code_dir, env=env, check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        os.unlink(f.name)

# ------------------------------------------------------------------ over HTTP


async def post_all(url: str, path: str, content_type: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    import httpx

    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    queue = iter(bodies)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        async def worker() -> None:
            for body in queue:
                start = time.perf_counter()
                answer = await http.post(path, content=body, headers={"content-type": content_type})
                latencies.append(time.perf_counter() - start)
                statuses[answer.status_code] += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {"messages": len(bodies), "seconds": round(elapsed, 3), "msgs_per_s": round(len(bodies) / elapsed, 1),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}}


async def records_in_topic(bootstrap: str) -> int:
    """The sum of `ingest.messages`' end offsets: how many records it holds."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (topic,) = await admin.describe_topics([TOPIC])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        offsets = await consumer.end_offsets([TopicPartition(TOPIC, p["partition"]) for p in topic["partitions"]])
        return sum(offsets.values())
    finally:
        await consumer.stop()


# ------------------------------------------------------------------ variants, stack and service


def extract(ref: str, into: Path) -> Path:
    """The services and shared packages of commit `ref`, extracted (git archive) into `into`."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref, "services", "shared"],
                         check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    return into


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ingest exited with {process.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("ingest did not become healthy")


def run_variant(name: str, code_dir: Path, args: argparse.Namespace, run: str) -> dict[str, Any]:
    bootstrap = f"127.0.0.1:{args.kafka_port}"
    url = f"http://127.0.0.1:{args.http_port}"
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, MONGODB_URL=f"mongodb://127.0.0.1:{args.mongo_port}",
               MONGODB_DATABASE="ingest_bench", INGEST_HTTP_PORT=str(args.http_port), PYTHONPATH=str(code_dir),
               DESKSTREAM_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
               DESKSTREAM_API_TOKEN=os.environ.get("DESKSTREAM_API_TOKEN") or "bench-ingest-" + run)
    log = open(Path(args.state_dir) / f"ingest-{name}.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "services.ingest"], cwd=code_dir, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    result: dict[str, Any] = {"variant": name}
    try:
        wait_healthy(url, process)
        for channel, (path, content_type, make) in CHANNELS.items():
            warm = make(args.warmup, f"{run}-{name}-warm")
            asyncio.run(post_all(url, path, content_type, warm, args.concurrency))
            bodies = make(args.messages, f"{run}-{name}")
            before = asyncio.run(records_in_topic(bootstrap))
            http = asyncio.run(post_all(url, path, content_type, bodies, args.concurrency))
            http["records_published"] = asyncio.run(records_in_topic(bootstrap)) - before
            http["avg_body_bytes"] = round(statistics.mean(len(b) for b in bodies))
            result[channel] = {"http": http}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    costs = inproc_in(code_dir, {c: make(args.inproc, f"{run}-inproc") for c, (_, _, make) in CHANNELS.items()})
    for channel, cost in costs.items():
        result[channel]["inproc"] = cost
    return result


def table(results: list[dict[str, Any]]) -> str:
    head = (f"{'variant':<10} {'channel':<7} {'HTTP msg/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'published':>9} "
            f"{'normalise µs':>12} {'encode µs':>9} {'1-core msg/s':>12}")
    lines = [head, "-" * len(head)]
    for r in results:
        for channel in CHANNELS:
            h, c = r[channel]["http"], r[channel]["inproc"]
            lines.append(f"{r['variant']:<10} {channel:<7} {h['msgs_per_s']:>10} {h['p50_ms']:>7} {h['p99_ms']:>7} "
                         f"{h['records_published']:>9} {c['normalise_us']:>12} {c['encode_us']:>9} "
                         f"{c['per_core_msgs_per_s']:>12}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=4000, help="measured messages per channel over HTTP")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--inproc", type=int, default=2000, help="messages per channel timed in-process")
    parser.add_argument("--baseline", help="also measure this commit's ingest first (before/after)")
    parser.add_argument("--state-dir", default=str(ROOT / ".state" / "ingest-bench"))
    parser.add_argument("--kafka-port", type=int, default=29492)
    parser.add_argument("--controller-port", type=int, default=29493)
    parser.add_argument("--mongo-port", type=int, default=29417)
    parser.add_argument("--http-port", type=int, default=28401)
    parser.add_argument("--keep-stack", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results-ingest.json"))
    args = parser.parse_args(argv)

    Path(args.state_dir).mkdir(parents=True, exist_ok=True)
    stack = ["--state-dir", args.state_dir]
    subprocess.run([*STACKCTL, "infra-up", *stack, "--kafka-port", str(args.kafka_port),
                    "--controller-port", str(args.controller_port), "--mongo-port", str(args.mongo_port)], check=True)
    run = uuid.uuid4().hex[:8]
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.baseline:
                sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline],
                                     check=True, capture_output=True, text=True).stdout.strip()
                results.append(run_variant(f"@{sha}", extract(args.baseline, Path(tmp)), args, run))
            results.append(run_variant("tree", ROOT, args, run))
    finally:
        if not args.keep_stack:
            subprocess.run([*STACKCTL, "clean", *stack], check=False)
    print(table(results))
    report = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine_cpus": os.cpu_count(),
              "command": "python -m bench.ingest " + " ".join(argv if argv is not None else sys.argv[1:]),
              "settings": {k: getattr(args, k) for k in ("messages", "warmup", "concurrency", "inproc")},
              "results": results}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        for channel in CHANNELS:
            h = r[channel]["http"]
            if h["statuses"] != {"202": h["messages"]} or h["records_published"] != h["messages"]:
                print(f"{r['variant']} {channel}: not every message was accepted and published: {h}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
