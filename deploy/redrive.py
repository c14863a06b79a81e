"""Re-drive dead letters: once the cause is fixed, send the original records from
`deadletter` back to the topics they came from, byte for byte, with their keys.

    python -m deploy.redrive [--topic ingest.messages] [--service tickets] [--dry-run]

Reads `deadletter` with its own consumer group (`deskstream-redrive`) up to the end it had
when it started — a re-driven record that fails again is a new dead letter for the next
run, not a loop — so each dead letter is re-driven once."""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared import topics


async def redrive(bootstrap: str, *, topic: str | None, service: str | None, dry_run: bool,
                  idle_s: float = 3.0) -> tuple[int, int]:
    consumer = AIOKafkaConsumer(topics.DEADLETTER, bootstrap_servers=bootstrap, group_id="deskstream-redrive",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    sent = skipped = 0
    ends: dict = {}  # per partition: the end offset when this run first saw it
    try:
        while batch := await consumer.getmany(timeout_ms=int(idle_s * 1000)):
            done: dict = {}
            for tp, records in batch.items():
                if tp not in ends:
                    ends[tp] = (await consumer.end_offsets([tp]))[tp]
                for record in records:
                    if record.offset >= ends[tp]:
                        continue  # dead-lettered after this run started: the next run's business
                    done[tp] = record.offset + 1
                    try:
                        letter = json.loads(record.value)["data"]
                        original = base64.b64decode(letter["original_base64"])
                    except (ValueError, KeyError, TypeError):
                        skipped += 1
                        continue
                    if (topic and letter["source_topic"] != topic) or (service and letter["service"] != service):
                        skipped += 1
                        continue
                    key = letter.get("source_key")
                    print(f"{'would re-drive' if dry_run else 're-drive'} {letter['source_topic']}"
                          f"[{letter.get('source_partition')}]@{letter.get('source_offset')}: {letter['reason'][:100]}")
                    if not dry_run:
                        await producer.send_and_wait(letter["source_topic"], original,
                                                     key=key.encode() if key else None)
                    sent += 1
            if done and not dry_run:
                await consumer.commit(done)  # never past what this run handled
        return sent, skipped
    finally:
        await consumer.stop()
        await producer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topic", help="only dead letters that came from this topic")
    parser.add_argument("--service", help="only dead letters this service gave up on")
    parser.add_argument("--dry-run", action="store_true", help="list what would be re-driven, send nothing")
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    sent, skipped = asyncio.run(redrive(bootstrap, topic=args.topic, service=args.service, dry_run=args.dry_run))
    print(f"redrive: {sent} record(s) {'to re-drive' if args.dry_run else 're-driven'}, {skipped} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
