"""Ingest alone: how many chat requests a second one ingest process (one uvicorn worker) takes
over HTTP with every 202 meaning Kafka acknowledged the record, and its latency at 1,000/s.

For each variant (the working tree by default; `--variant` adds e.g. an earlier commit):
1. starts Kafka and FerretDB on a private stack (own state dir and ports) once, then that
   variant's ingest as its own process;
2. warms it up, then measures with bench/loadgen.py (asyncio streams, keep-alive connections):
   - closed loop: 64 requests in flight for `--closed-s` — the most it answers;
   - open loop at 1,000 requests/s for `--p99-s`: p50/p99 from when each request was due;
   - open loop stepping up through `--rates` until answers fall behind (answered < 95% of the
     rate, any non-202, anything unanswered) or p99 passes `--max-p99-ms`: the highest rate
     that held is `ingest_alone_req_per_s`;
   - with `--email`, a closed loop of ~1 KB mails (bench/ingest.py's corpus), which also
     stores each original in FerretDB;
3. reads the ingest process's CPU from /proc/<pid>/stat around each phase (CPU µs a request),
   and checks that `ingest.messages` grew by one record per 202.

The load generator, Kafka and FerretDB share the machine's cores with ingest, as in production
on one box. Results: a table on stdout and bench/results-ingest-alone.json.

    flock /tmp/deskstream-bench.lock .venv/bin/python -m bench.ingest_alone
    flock /tmp/deskstream-bench.lock .venv/bin/python -m bench.ingest_alone --email --nice -10 \\
        --variant before:<commit>:asyncio --variant after:tree:auto     # before/after, one run

On a machine shared with other work, `--nice -10` (root) runs everything measured — this
process, ingest, its Kafka and FerretDB — ahead of the rest. Each phase also reports the
Kafka acknowledgement times ingest saw (its `deskstream_ingest_publish_seconds` histogram),
which tells a slow broker from a slow ingest.

`measure(ingest_url, pid=...)` runs step 2 against an ingest that is already running (for
`make bench`); it returns `ingest_alone_req_per_s` and `ingest_p99_ms_at_1000` among others.
"""
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import loadgen

ROOT = Path(__file__).resolve().parent.parent
STACKCTL = [sys.executable, str(ROOT / "deploy" / "local" / "stackctl.py")]
RATES = (500, 1000, 1250, 1500, 1750, 2000, 2250, 2500, 3000, 3500, 4000)
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


async def publish_histogram(host: str, port: int) -> dict[float, float] | None:
    """Ingest's Kafka acknowledgement times (`deskstream_ingest_publish_seconds`, acked) as
    {bucket upper bound: count}; None when this ingest does not export them (older code)."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        _, body, _ = await loadgen.read_response(reader)
        writer.close()
    except (OSError, asyncio.IncompleteReadError, loadgen.ProtocolError):
        return None
    buckets = {}
    for line in body.decode().splitlines():
        if line.startswith("deskstream_ingest_publish_seconds_bucket{") and 'outcome="acked"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(le)] = float(line.rsplit(" ", 1)[1])
    return buckets or None


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding quantile `q` of what was observed between two scrapes."""
    counts = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = counts[-1][1] if counts else 0
    if not total:
        return None
    return next(le for le, n in counts if n >= q * total)


@dataclass
class Phase:
    """One load phase's outcome, with the ingest process's CPU over it."""

    name: str
    summary: dict[str, Any]
    cpu_us_per_request: float | None = None
    records_published: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {"phase": self.name, **self.summary, "ingest_cpu_us_per_request": self.cpu_us_per_request,
                "records_published": self.records_published, **self.extra}


async def settle(pid: int | None, *, idle_share: float = 0.05, limit_s: float = 60.0) -> None:
    """Wait until ingest is idle: an overloaded phase leaves requests the client stopped waiting
    for, and the next phase must not pay for them."""
    if not pid:
        return
    deadline, quiet = time.monotonic() + limit_s, 0
    while quiet < 2 and time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(0.5)
        quiet = quiet + 1 if cpu_seconds(pid) - before < idle_share * 0.5 else 0


async def _phase(name: str, run: Any, *, pid: int | None, bootstrap: str | None,
                 others: dict[str, int], metrics_at: tuple[str, int]) -> Phase:
    from bench.ingest import records_in_topic

    await settle(pid)
    before_records = await records_in_topic(bootstrap) if bootstrap else None
    acks0 = await publish_histogram(*metrics_at)
    cpu0 = cpu_seconds(pid) if pid else None
    others0 = {what: cpu_seconds(p) for what, p in others.items()}
    results: loadgen.Results = await run
    phase = Phase(name, results.summary())
    n = max(1, results.requests)
    if pid:
        phase.cpu_us_per_request = round((cpu_seconds(pid) - cpu0) / n * 1e6, 1)
    for what, p in others.items():  # what the same requests cost Kafka and FerretDB
        phase.extra[f"{what}_cpu_us_per_request"] = round((cpu_seconds(p) - others0[what]) / n * 1e6, 1)
    acks1 = await publish_histogram(*metrics_at)
    if acks0 is not None and acks1 is not None:  # how much of the latency was waiting for Kafka
        for q in (0.5, 0.99):
            bound = bucket_quantile(acks0, acks1, q)
            phase.extra[f"kafka_ack_p{int(q * 100)}_ms_at_most"] = None if bound is None else bound * 1000
    if bootstrap:
        phase.records_published = await records_in_topic(bootstrap) - before_records
    ids = [m for m, s in zip(results.message_id, results.status) if s == 202]
    phase.extra["distinct_message_ids"] = len(set(ids))
    return phase


def held(results: dict[str, Any], rate: float, max_p99_ms: float) -> bool:
    """Did the service keep up with an open-loop step? Every request answered 202, at (nearly)
    the rate asked for, and the slowest 1% within `max_p99_ms`."""
    return (results["statuses"] == {"202": results["requests"]} and results["unanswered"] == 0
            and results["answered_per_s"] >= 0.95 * rate and (results["p99_ms"] or 1e9) <= max_p99_ms)


def mail_requests(run_id: str, count: int = 2000) -> loadgen.MakeRequest:
    """bench/ingest.py's ~1 KB mails (plain, HTML, replies, Arabic, a few PDFs), made unique per request."""
    from bench.ingest import emails

    corpus = emails(count, run_id)
    counter = iter(range(1 << 62))

    def make() -> tuple[str, bytes, str]:
        i = next(counter)
        raw = corpus[i % count]
        if i >= count:  # a new Message-ID: a new message (and a new original to store), not a redelivery
            raw = raw.replace(f"<{run_id}.".encode(), f"<{run_id}.r{i // count}.".encode(), 1)
        return "/v1/inbound/email", raw, "message/rfc822"

    return make


async def measure(ingest_url: str, *, pid: int | None = None, bootstrap: str | None = None,
                  rates: tuple[float, ...] = RATES, step_s: float = 8.0, max_p99_ms: float = 200.0,
                  p99_rate: float = 1000.0, p99_s: float = 15.0, closed_in_flight: int = 64,
                  closed_s: float = 10.0, connections: int = 64, warmup_s: float = 3.0,
                  chat: bool = True, email: bool = False, others: dict[str, int] | None = None,
                  say: Any = print) -> dict[str, Any]:
    """Measure a running ingest at `ingest_url` (its process `pid` for CPU, Kafka at `bootstrap`
    to count records, `others` as {name: pid} for their CPU too). Returns the headline numbers
    and every phase."""
    url = urlsplit(ingest_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    run_id = uuid.uuid4().hex[:8]
    from shared.credentials import ChatTokens, chat_key
    from shared.settings import ServiceSettings

    chats = loadgen.chat_requests(run_id, ChatTokens(chat_key(ServiceSettings())))  # keyed as the services are
    phases: list[Phase] = []
    out: dict[str, Any] = {}

    async def phase(name: str, run: Any) -> Phase:
        result = await _phase(name, run, pid=pid, bootstrap=bootstrap, others=others or {}, metrics_at=(host, port))
        phases.append(result)
        s = result.summary
        infra = "".join(f"  {k.split('_')[0]} {v}" for k, v in result.extra.items()
                        if k.endswith("_cpu_us_per_request"))
        acks = result.extra.get("kafka_ack_p99_ms_at_most")
        say(f"  {name:<26} {s['answered_per_s']:>7}/s  p50 {s['p50_ms']} ms  p99 {s['p99_ms']} ms  "
            f"{s['statuses']}  CPU µs/req: ingest {result.cpu_us_per_request}{infra}  "
            f"records {result.records_published}" + (f"  Kafka ack p99 ≤ {acks:g} ms" if acks else ""))
        return result

    if chat:
        await loadgen.run_open_loop(host, port, chats, 300, warmup_s, connections)  # unmeasured
        closed = await phase(f"closed {closed_in_flight} in flight",
                             loadgen.run_closed_loop(host, port, chats, closed_in_flight, closed_s))
        at_rate = await phase(f"open {p99_rate:g}/s",
                              loadgen.run_open_loop(host, port, chats, p99_rate, p99_s, connections))
        sustained = 0.0
        for rate in rates:
            step = await phase(f"open step {rate:g}/s",
                               loadgen.run_open_loop(host, port, chats, rate, step_s, connections))
            if not held(step.summary, rate, max_p99_ms):
                # the machine is shared: a step that failed once is tried again before it counts
                step = await phase(f"open step {rate:g}/s again",
                                   loadgen.run_open_loop(host, port, chats, rate, step_s, connections))
                if not held(step.summary, rate, max_p99_ms):
                    break
            sustained = rate
        out |= {
            "ingest_alone_req_per_s": sustained,
            "ingest_p99_ms_at_1000": at_rate.summary["p99_ms"] if p99_rate == 1000 else None,
            "ingest_p50_ms_at_1000": at_rate.summary["p50_ms"] if p99_rate == 1000 else None,
            "ingest_closed_loop_req_per_s": closed.summary["answered_per_s"],
            "ingest_closed_loop_p99_ms": closed.summary["p99_ms"],
            "ingest_cpu_us_per_request_closed": closed.cpu_us_per_request,
            "ingest_cpu_us_per_request_at_1000": at_rate.cpu_us_per_request,
        }
    if email:
        mails = mail_requests(run_id)
        await loadgen.run_closed_loop(host, port, mails, 16, warmup_s)  # unmeasured
        mail = await phase("email closed 32 in flight", loadgen.run_closed_loop(host, port, mails, 32, closed_s))
        mail_open = await phase("email open 300/s", loadgen.run_open_loop(host, port, mails, 300, p99_s, connections))
        out |= {"email_closed_loop_req_per_s": mail.summary["answered_per_s"],
                "email_cpu_us_per_request_closed": mail.cpu_us_per_request,
                "email_p99_ms_at_300": mail_open.summary["p99_ms"]}
    out["phases"] = [p.row() for p in phases]
    return out


# ------------------------------------------------------------------ variants, stack and process


@dataclass
class Variant:
    """`NAME:REF:LOOP[:ENV=VALUE,...]` — REF `tree` is the working tree, else a commit whose
    services/ and shared/ are extracted; LOOP `auto` runs `python -m services.ingest` as deployed
    (uvicorn picks uvloop and httptools when installed), `asyncio` forces asyncio and h11 (how it
    ran before those were installed)."""

    name: str
    ref: str = "tree"
    loop: str = "auto"
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, ref, loop, env = (text.split(":", 3) + ["", "", ""])[:4]
        if (loop or "auto") not in ("auto", "asyncio"):
            raise argparse.ArgumentTypeError(f"loop must be auto or asyncio, not {loop!r}")
        return cls(name, ref or "tree", loop or "auto", dict(kv.split("=", 1) for kv in env.split(",") if kv))


# the same uvicorn settings as shared.http.serve, with asyncio and h11 forced
FORCED_ASYNCIO = """
import uvicorn
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
settings = IngestSettings()
uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port,
            log_level=settings.log_level.lower(), access_log=False, lifespan="on", timeout_graceful_shutdown=10,
            loop="asyncio", http="h11")
"""


def extract(ref: str, into: Path) -> Path:
    from bench.ingest import extract as git_extract

    return git_extract(ref, into)


def start_ingest(variant: Variant, code_dir: Path, args: argparse.Namespace) -> subprocess.Popen:
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{args.kafka_port}",
               MONGODB_URL=f"mongodb://127.0.0.1:{args.mongo_port}", MONGODB_DATABASE="ingest_alone",
               INGEST_HTTP_PORT=str(args.http_port), PYTHONPATH=str(code_dir), DESKSTREAM_LOG_LEVEL="WARNING",
               PYTHONUNBUFFERED="1", DESKSTREAM_FERRETDB_SQLITE_DIR=str(Path(args.state_dir) / "ferretdb-data"),
               **variant.env)
    command = [sys.executable, "-m", "services.ingest"] if variant.loop == "auto" else \
        [sys.executable, "-c", FORCED_ASYNCIO]
    log = open(Path(args.state_dir) / f"ingest-{variant.name}.log", "w")
    return subprocess.Popen(command, cwd=code_dir, env=env, stdout=log, stderr=subprocess.STDOUT)


async def wait_healthy(host: str, port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ingest exited with {process.returncode}")
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            status, _, _ = await loadgen.read_response(reader)
            writer.close()
            if status == 200:
                return
        except (OSError, asyncio.IncompleteReadError, loadgen.ProtocolError):
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError("ingest did not become healthy")


def run_variant(variant: Variant, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    code_dir = ROOT if variant.ref == "tree" else extract(variant.ref, tmp / variant.name)
    process = start_ingest(variant, code_dir, args)
    say(f"{variant.name}: {variant.ref} with loop {variant.loop} {variant.env or ''} (pid {process.pid})")
    try:
        loadgen.run(wait_healthy("127.0.0.1", args.http_port, process))
        if args.nice is not None:
            renice(process.pid, args.nice)
        result = loadgen.run(measure(
            f"http://127.0.0.1:{args.http_port}", pid=process.pid, bootstrap=f"127.0.0.1:{args.kafka_port}",
            rates=tuple(args.rates), step_s=args.step_s, max_p99_ms=args.max_p99_ms, p99_s=args.p99_s,
            closed_s=args.closed_s, chat=not args.no_chat, email=args.email, others=infra_pids(args), say=say))
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    return {"variant": variant.name, "ref": variant.ref, "loop": variant.loop, "env": variant.env, **result}


def renice(pid: int, niceness: int) -> dict[int, int]:
    """Sets every thread of `pid` (Linux nices threads one by one: a JVM's workers are threads)
    to `niceness`; returns what each had, for `restore`."""
    before = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        tid = int(task.name)
        try:
            before[tid] = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
        except (ProcessLookupError, PermissionError):
            pass
    return before


def restore(niceness: dict[int, int]) -> None:
    for tid, value in niceness.items():
        try:
            os.setpriority(os.PRIO_PROCESS, tid, value)
        except (ProcessLookupError, PermissionError):
            pass


def infra_pids(args: argparse.Namespace) -> dict[str, int]:
    """Kafka's and FerretDB's processes, from stackctl's pid files in the state dir."""
    pids = {}
    for what in ("kafka", "ferretdb"):
        try:
            pids[what] = int((Path(args.state_dir) / "run" / f"{what}.pid").read_text())
        except (OSError, ValueError):
            pass
    return pids


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def table(results: list[dict[str, Any]]) -> str:
    keys = [("ingest_alone_req_per_s", "sustained/s"), ("ingest_closed_loop_req_per_s", "closed64/s"),
            ("ingest_p50_ms_at_1000", "p50@1000"), ("ingest_p99_ms_at_1000", "p99@1000"),
            ("ingest_cpu_us_per_request_closed", "cpu µs closed"),
            ("ingest_cpu_us_per_request_at_1000", "cpu µs@1000"),
            ("email_closed_loop_req_per_s", "mail32/s"), ("email_cpu_us_per_request_closed", "mail cpu µs"),
            ("email_p99_ms_at_300", "mail p99@300")]
    keys = [(k, h) for k, h in keys if any(k in r for r in results)]
    head = f"{'variant':<14}" + "".join(f"{h:>15}" for _, h in keys)
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r['variant']:<14}" + "".join(f"{str(r.get(k)):>15}" for k, _ in keys))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    # the ingest started here and the load agree on the keys (services refuse to start without a token)
    os.environ.setdefault("DESKSTREAM_API_TOKEN", "bench-ingest-" + uuid.uuid4().hex)
    os.environ.setdefault("DESKSTREAM_CHAT_SECRET", "bench-chat-" + uuid.uuid4().hex)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", type=Variant.parse,
                        help="NAME:REF:LOOP[:ENV=VALUE,...] (repeatable; default tree:tree:auto)")
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    parser.add_argument("--step-s", type=float, default=8.0)
    parser.add_argument("--max-p99-ms", type=float, default=200.0)
    parser.add_argument("--p99-s", type=float, default=15.0)
    parser.add_argument("--closed-s", type=float, default=10.0)
    parser.add_argument("--email", action="store_true", help="also measure ~1 KB mails (blobs stored in FerretDB)")
    parser.add_argument("--no-chat", action="store_true", help="skip the chat phases (with --email: mail only)")
    parser.add_argument("--state-dir", default=str(ROOT / ".state" / "ingest-alone"))
    parser.add_argument("--kafka-port", type=int, default=29592)
    parser.add_argument("--controller-port", type=int, default=29593)
    parser.add_argument("--mongo-port", type=int, default=29517)
    parser.add_argument("--http-port", type=int, default=28501)
    parser.add_argument("--keep-stack", action="store_true")
    parser.add_argument("--nice", type=int, help="run everything measured at this niceness (e.g. -10; needs root)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results-ingest-alone.json"))
    args = parser.parse_args(argv)
    variants = args.variant or [Variant("tree")]

    Path(args.state_dir).mkdir(parents=True, exist_ok=True)
    stack = ["--state-dir", args.state_dir]
    subprocess.run([*STACKCTL, "infra-up", *stack, "--kafka-port", str(args.kafka_port),
                    "--controller-port", str(args.controller_port), "--mongo-port", str(args.mongo_port)], check=True)
    results = []
    # on a machine shared with other work, a higher priority for everything measured (this
    # process, ingest, its Kafka and FerretDB) keeps the others' load out of the numbers
    reniced = {}
    if args.nice is not None:
        for pid in [os.getpid(), *infra_pids(args).values()]:
            reniced.update(renice(pid, args.nice))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for variant in variants:
                results.append(run_variant(variant, args, Path(tmp)))
    finally:
        restore(reniced)
        if not args.keep_stack:
            subprocess.run([*STACKCTL, "clean", *stack], check=False)
    print(table(results))
    report = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine_cpus": os.cpu_count(),
              "command": "python -m bench.ingest_alone " + " ".join(argv if argv is not None else sys.argv[1:]),
              "load_average_after": os.getloadavg(), "results": results}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
