"""Analytics snapshots on the real server: a restart finds the numbers and the offsets they hold
(FerretDB refused the snapshot while its offsets were stored as arrays inside an array, so every
restart replayed all of history)."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.analytics.store import AnalyticsStore

pytestmark = pytest.mark.integration


async def test_a_snapshot_is_written_and_read_back_with_its_offsets(storage):
    store = AnalyticsStore(storage)
    positions = {("tickets.events", 0): 14421, ("tickets.events", 5): 14482, ("sla.events", 2): 7}
    await store.save("analytics-1", {"tickets": {"t1": [1, 2]}}, positions, datetime(2026, 12, 3, tzinfo=UTC))
    await store.save("analytics-1", {"tickets": {"t1": [1, 2], "t2": [3]}}, {**positions, ("sla.events", 2): 9},
                     datetime(2026, 12, 3, 0, 0, 30, tzinfo=UTC))
    data, held = await store.newest()
    assert data == {"tickets": {"t1": [1, 2], "t2": [3]}}
    assert held == {**positions, ("sla.events", 2): 9}
