"""Settings kept a few seconds (shared/cache.py): read once within the time, again after it,
and at once after a change made through this process."""
import asyncio

from shared.cache import Cached


class Source:
    def __init__(self):
        self.value, self.reads, self.now = 1, 0, 0.0

    async def load(self):
        self.reads += 1
        value = self.value  # what the database answered; the answer arrives a moment later
        await asyncio.sleep(0)
        return value


async def test_kept_for_its_time_then_read_again():
    src = Source()
    cache = Cached(src.load, ttl_s=5, clock=lambda: src.now)
    assert [await cache.get() for _ in range(3)] == [1, 1, 1] and src.reads == 1
    src.value, src.now = 2, 4.9
    assert await cache.get() == 1  # another process's change: seen within the time
    src.now = 5.0
    assert await cache.get() == 2 and src.reads == 2


async def test_a_change_made_here_is_seen_at_once():
    src = Source()
    cache = Cached(src.load, ttl_s=60, clock=lambda: src.now)
    await cache.get()
    src.value = 3
    cache.invalidate()
    assert await cache.get() == 3


async def test_a_value_read_before_a_change_is_not_kept():
    src = Source()
    cache = Cached(src.load, ttl_s=60, clock=lambda: src.now)

    async def change_meanwhile():
        src.value = 4
        cache.invalidate()

    reading = asyncio.create_task(cache.get())
    await asyncio.sleep(0)  # the read has started with the old value
    await change_meanwhile()
    assert await reading == 1  # answered before the change
    assert await cache.get() == 4  # but not kept
