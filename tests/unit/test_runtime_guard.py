"""A service's background loops (its consumers) keep running until shutdown."""
import asyncio
from types import SimpleNamespace

from shared.runtime import Runtime


async def test_a_loop_ended_by_a_cancellation_from_inside_is_restarted_and_shutdown_still_stops_it(caplog):
    runs = 0
    running = asyncio.Event()

    async def consume() -> None:  # a client library's own task was cancelled under it, once
        nonlocal runs
        runs += 1
        if runs == 1:
            raise asyncio.CancelledError
        running.set()
        await asyncio.sleep(3600)

    guard = asyncio.create_task(Runtime._guard(SimpleNamespace(), consume))
    await asyncio.wait_for(running.wait(), 5)
    assert runs == 2
    assert "cancelled from inside; restarting it" in caplog.text
    guard.cancel()  # shutdown
    await asyncio.gather(guard, return_exceptions=True)
    assert guard.cancelled()
