"""Re-drive dead letters: once the cause is fixed, send the original records from
`deadletter` back to the topics they came from, byte for byte, with their keys.

    python -m deploy.redrive [--topic ingest.messages] [--service tickets] [--dry-run]

Each dead letter is re-driven once, and one a filter left out stays for a later run: after
`--topic ingest.messages` has sent those back, `--topic tickets.commands` (or a run without a
filter) still finds every dead letter of tickets.commands, however the two were interleaved.

How it remembers: the consumer group `deskstream-redrive` commits, per partition of
`deadletter`, the first dead letter not yet re-driven (everything before it has been), and in
the commit's metadata the offsets after that point that were re-driven already (as ranges,
`"120-131,140"`). The next run starts at the committed offset and passes over those. The
metadata is bounded (Kafka's `offset.metadata.max.bytes`, 4096 by default); when very many
re-driven and left-out dead letters alternate, the highest re-driven ones are forgotten and
a later run whose filter matches them sends them again — once more, never lost; every
consumer takes records at least once and drops duplicates.

A run reads up to the end `deadletter` had when it started: a re-driven record that fails
again is a new dead letter for the next run, not a loop. A dead letter that cannot be read
(not our envelope) is passed over for good: no run could re-drive it."""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared import topics

GROUP = "deskstream-redrive"
MAX_METADATA = 3000  # characters; under Kafka's default offset.metadata.max.bytes (4096)


def ranges(offsets: set[int], *, limit: int = MAX_METADATA) -> str:
    """`{3, 4, 5, 9}` as `"3-5,9"`, lowest first, cut to at most `limit` characters."""
    parts: list[str] = []
    size = 0
    ordered = sorted(offsets)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        part = str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}"
        if size + len(part) + 1 > limit:
            break  # the rest is forgotten: a later matching run sends those again (at least once)
        parts.append(part)
        size += len(part) + 1
        i = j + 1
    return ",".join(parts)


def parse_ranges(text: str) -> set[int]:
    """The offsets `ranges` wrote; anything else (another tool's metadata) is no offset at all."""
    found: set[int] = set()
    for part in (text or "").split(","):
        first, _, last = part.strip().partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            found.update(range(int(first), int(last or first) + 1))
    return found


@dataclass
class Progress:
    """One partition of `deadletter` in one run: from `start` (the committed offset) on, which
    dead letters are done (re-driven now or before, or unreadable) and which were left out."""

    start: int
    done: set[int] = field(default_factory=set)
    first_left: int | None = None
    read_to: int = 0  # the offset after the last one read

    def __post_init__(self) -> None:
        self.read_to = max(self.read_to, self.start)

    def saw(self, offset: int, *, done: bool) -> None:
        if done:
            self.done.add(offset)
        elif self.first_left is None or offset < self.first_left:
            self.first_left = offset
        self.read_to = max(self.read_to, offset + 1)

    def commit_point(self) -> tuple[int, str]:
        """The offset to commit — the first dead letter not yet done — and, as metadata, the
        done ones after it."""
        point = self.read_to if self.first_left is None else self.first_left
        return point, ranges({o for o in self.done if o >= point})


async def _committed(bootstrap: str) -> dict[TopicPartition, tuple[int, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(GROUP)
    finally:
        await admin.close()
    return {tp: (meta.offset, meta.metadata or "") for tp, meta in found.items()
            if tp.topic == topics.DEADLETTER and meta.offset >= 0}


async def redrive(bootstrap: str, *, topic: str | None, service: str | None, dry_run: bool,
                  idle_s: float = 3.0) -> tuple[int, int]:
    """Re-drives the dead letters matching `topic` and `service` (None: any); returns how many
    were re-driven and how many were left (filtered out, or unreadable)."""
    committed = await _committed(bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    sent = skipped = 0
    try:
        tps = [TopicPartition(topics.DEADLETTER, p) for p in sorted(await producer.partitions_for(topics.DEADLETTER))]
        consumer.assign(tps)
        progress: dict[TopicPartition, Progress] = {}
        for tp in tps:
            start, metadata = committed.get(tp, (0, ""))
            progress[tp] = Progress(start, done=parse_ranges(metadata))
            consumer.seek(tp, start)  # before the log's start (retention): auto_offset_reset takes over
        ends = await consumer.end_offsets(tps)  # this run's business ends here
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            if not batch:
                break
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue  # dead-lettered after this run started: the next run's business
                    if record.offset in progress[tp].done:
                        progress[tp].saw(record.offset, done=True)  # re-driven by an earlier run
                        continue
                    try:
                        letter = json.loads(record.value)["data"]
                        original = base64.b64decode(letter["original_base64"])
                        source = letter["source_topic"]
                    except (ValueError, KeyError, TypeError):
                        print(f"unreadable dead letter {tp.topic}[{tp.partition}]@{record.offset}: passed over")
                        progress[tp].saw(record.offset, done=True)
                        skipped += 1
                        continue
                    if (topic and source != topic) or (service and letter.get("service") != service):
                        progress[tp].saw(record.offset, done=False)  # kept for a run that wants it
                        skipped += 1
                        continue
                    key = letter.get("source_key")
                    print(f"{'would re-drive' if dry_run else 're-drive'} {source}"
                          f"[{letter.get('source_partition')}]@{letter.get('source_offset')}: "
                          f"{str(letter.get('reason'))[:100]}")
                    if not dry_run:
                        await producer.send_and_wait(source, original, key=key.encode() if key else None)
                    progress[tp].saw(record.offset, done=True)
                    sent += 1
            if not dry_run:  # never past what this run handled
                await consumer.commit({tp: progress[tp].commit_point() for tp in batch})
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
    print(f"redrive: {sent} record(s) {'to re-drive' if args.dry_run else 're-driven'}, "
          f"{skipped} left (filtered out, kept for a later run; or unreadable)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
