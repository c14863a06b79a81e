import asyncio

from shared.locks import KeyedLock


async def test_same_key_runs_one_at_a_time_other_keys_in_parallel():
    locks, running, peak = KeyedLock(), {"a": 0, "b": 0}, {"a": 0, "b": 0}

    async def work(key):
        async with locks.hold(key):
            running[key] += 1
            peak[key] = max(peak[key], running[key])
            await asyncio.sleep(0.01)
            running[key] -= 1

    await asyncio.gather(*(work(k) for k in "ababab"))
    assert peak == {"a": 1, "b": 1}
    assert len(locks) == 0  # nothing kept for idle keys
