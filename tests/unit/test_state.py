"""The changelog-backed state store (shared/state.py): what it holds in memory beyond `hot` decoded values."""
from __future__ import annotations

import gc
import tracemalloc

from shared.state import ChangelogStore
from tests.unit.memory import SentRecords


def ticket_like(i: int) -> dict:
    return {"id": f"TK-{i:012d}", "status": "new", "customer": {"name": "Noura", "identities": [f"chat:v{i}"]},
            "seen": [f"m{i}", f"c{i}"], "words": ["where", "is", "my", "order"], "text": "details " * 70}


async def test_values_held_encoded_take_about_their_own_size_in_memory():
    sent = SentRecords()
    store: ChangelogStore[dict] = ChangelogStore("state", sent, "unused", hot=10)
    size = len(__import__("orjson").dumps(ticket_like(0)))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000):
            store.put(i % 3, f"T:{i}", ticket_like(i))
            if i % 100 == 99:
                await store.flush()
                sent.clear()
        await store.flush()
        sent.clear()
        gc.collect()
        per_value = (tracemalloc.get_traced_memory()[0] - before) / 2000
    finally:
        tracemalloc.stop()
    assert store.decoded() <= 10
    # the encoded value, its key and the dict slot: not the writer's buffer the JSON was made in (~16 KB)
    assert per_value < size + 400, f"{per_value:.0f} bytes held per {size}-byte value"
    assert store.get(1, "T:1999") == ticket_like(1999)  # decoded again when asked for
