"""shared_protocol.deadlines: one loop timer gives every overdue future TimeoutError, and nothing else."""

from __future__ import annotations

import asyncio

import pytest

from shared_protocol.deadlines import Deadlines


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=30))


def test_overdue_futures_get_timeout_error_in_deadline_order():
    async def main():
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        late, soon = loop.create_future(), loop.create_future()
        deadlines.add(late, 0.30)
        deadlines.add(soon, 0.05)  # earlier than the armed timer: re-armed for it
        with pytest.raises(TimeoutError):
            await soon
        assert not late.done()
        with pytest.raises(TimeoutError):
            await late
        assert len(deadlines) == 0

    run(main())


def test_answered_or_discarded_futures_are_left_alone():
    async def main():
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        answered, discarded, waiting = loop.create_future(), loop.create_future(), loop.create_future()
        for future in (answered, discarded, waiting):
            deadlines.add(future, 0.05)
        answered.set_result("reply")
        deadlines.discard(discarded)
        with pytest.raises(TimeoutError):
            await waiting
        assert answered.result() == "reply"  # not replaced by an exception
        assert not discarded.done()
        deadlines.close()

    run(main())


def test_one_timer_serves_many_waiters():
    """The point of the module: a thousand waiters with one timeout arm one timer, not a thousand."""

    async def main():
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        armed = 0
        original = loop.call_at

        def counting_call_at(when, callback, *args, **kwargs):
            nonlocal armed
            armed += 1
            return original(when, callback, *args, **kwargs)

        loop.call_at = counting_call_at
        try:
            futures = [loop.create_future() for _ in range(1000)]
            for future in futures:
                deadlines.add(future, 0.1)
            for future in futures[:900]:
                future.set_result(None)
                deadlines.discard(future)
            results = await asyncio.gather(*futures[900:], return_exceptions=True)
        finally:
            loop.call_at = original
        assert all(isinstance(r, TimeoutError) for r in results)
        assert armed <= 3, armed

    run(main())


def test_a_waiter_added_after_expiry_still_times_out():
    async def main():
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        first = loop.create_future()
        deadlines.add(first, 0.01)
        with pytest.raises(TimeoutError):
            await first
        second = loop.create_future()
        deadlines.add(second, 0.01)  # the timer is re-armed after it went idle
        with pytest.raises(TimeoutError):
            await second

    run(main())
