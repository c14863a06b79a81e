"""Event → metric freshness of analytics (p50/p90/p99) on a stack of its own.

    .venv/bin/python -m bench.analytics_freshness [-n 200] [--rate 5]

Starts Kafka, FerretDB and the five services in `.state/bench-freshness` (ports below the
ephemeral range), runs `services.analytics.freshness` against them — new chat conversations
through ingest, their `ticket.created` records' Kafka timestamps, and the first scrape of
analytics' /metrics that counts each — prints its table and stops the stack."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.local import stack as stackctl  # noqa: E402
from services.analytics import freshness  # noqa: E402

STATE = ROOT / ".state" / "bench-freshness"
PORTS = {"kafka_port": 24092, "controller_port": 24093, "mongo_port": 24017}
OFFSET = 16000  # services on 24001..24005


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0)
    args = parser.parse_args()
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL", "DESKSTREAM_API_TOKEN"):
        os.environ.pop(name, None)
    ctl = stackctl
    stack = ctl.up(state_dir=STATE, port_offset=OFFSET, quiet=True, **PORTS)
    try:
        return freshness.main(["--ingest", stack.service_urls["ingest"], "--analytics", stack.service_urls["analytics"],
                               "--kafka", stack.kafka_bootstrap, "-n", str(args.n), "--rate", str(args.rate)])
    finally:
        ctl.clean(state_dir=STATE, quiet=True)


if __name__ == "__main__":
    sys.exit(main())
