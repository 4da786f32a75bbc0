"""Deadlines for many waiters on one event-loop timer.

`asyncio.timeout` arms and cancels one loop timer per use: about 8 us on uvloop, and a relayed
request used two of them (the gateway's wait for the backend, the backend's wait for its model),
a tenth of the request's whole CPU cost (bench/peers.py). Here every waiter is a (future, deadline)
entry; one timer is armed for the earliest deadline, and when it fires the expired futures get
`TimeoutError` and the timer is re-armed for the next earliest. With one common timeout the
earliest deadline is always the oldest waiter's, so the timer fires about once per timeout period
however many requests pass.

A waiter is a future by default (it gets `TimeoutError`); with `expire` it is any key, and
`expire(key)` is called for it instead (BackendClient's requests: a callback, no future).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable


def _time_out(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class Deadlines:
    """Expire waiters not discarded by their deadline (loop time, `loop.time()`): futures get
    `TimeoutError`, or `expire(key)` is called when given."""

    __slots__ = ("_loop", "_waiters", "_handle", "_armed_at", "_expire_one")

    def __init__(self, expire: Callable[[Hashable], None] | None = None) -> None:
        self._expire_one = expire or _time_out
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[Hashable, float] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0

    def __len__(self) -> int:
        return len(self._waiters)

    def add(self, waiter: Hashable, timeout: float) -> None:
        """`waiter` (a future, or a key) expires unless discarded (a future: done) within `timeout` s."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._waiters[waiter] = deadline
        if self._handle is None or deadline < self._armed_at:
            self._arm(deadline)

    def discard(self, waiter: Hashable) -> None:
        """Forget a waiter (its answer came, or it was given up). Its timer, if it was the earliest,
        fires once more and finds nothing to expire: cheaper than re-arming on every discard."""
        self._waiters.pop(waiter, None)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._waiters.clear()

    def _arm(self, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = deadline
        self._handle = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._handle = None
        now = self._loop.time()
        earliest: float | None = None
        expired: list[Hashable] = []
        for waiter, deadline in self._waiters.items():
            if deadline <= now:
                expired.append(waiter)
            elif earliest is None or deadline < earliest:
                earliest = deadline
        for waiter in expired:
            del self._waiters[waiter]
        if earliest is not None:
            self._arm(earliest)
        for waiter in expired:  # last: an expiry callback may add waiters
            self._expire_one(waiter)
