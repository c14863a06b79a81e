"""How long a service process's garbage collections hold it (shared/telemetry.py `deskstream_gc_seconds`):
a full collection of a process holding thousands of tickets takes 150–300 ms, a pause every record in
flight waits through, so it is on /metrics by generation."""
from __future__ import annotations

import gc

from shared.telemetry import Telemetry


def count(text: str, generation: int) -> float:
    prefix = f'deskstream_gc_seconds_count{{generation="{generation}"}}'
    return float(next(line for line in text.splitlines() if line.startswith(prefix)).split()[-1])


def test_collections_are_timed_by_generation():
    telemetry = Telemetry("unit")
    before = count(telemetry.exposition().decode(), 2)
    held = [{"ticket": i, "words": [str(i)]} for i in range(20_000)]
    gc.collect(2)
    text = telemetry.exposition().decode()
    assert count(text, 2) >= before + 1 and held
    assert 'deskstream_gc_seconds_bucket{generation="2",le="1.0"}' in text
