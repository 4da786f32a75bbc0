"""The request collector every model backend runs its work through (dynamic batching).

A request waits at most `max_queue_delay_ms` for company; a batch never exceeds `max_batch_size`
(1 means every request is its own batch). Requests already waiting when a batch is formed join it
without delay, so under load batches form by themselves even with a delay of 0. Every request
keeps its own future, hence its own reply, deadline and error. A request whose deadline passed is
`discard`ed at once, so it neither holds its payload in memory nor gets computed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, eq=False)
class PendingItem:
    payload: Any  # the request's `data`, still undecoded (decoded on the worker)
    owner: str  # whose sessions it may touch
    received_at: float
    future: asyncio.Future | None = field(repr=False)  # None: computed at once, never queued
    codec: str = "json"  # how `payload` is encoded (messages.JSON / MSGPACK)


class BatchCollector:
    def __init__(self, max_batch_size: int, max_queue_delay_ms: float) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if max_queue_delay_ms < 0:
            raise ValueError("max_queue_delay_ms must be >= 0")
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_queue_delay_ms / 1000
        self.sizes: collections.Counter[int] = collections.Counter()
        self._items: collections.deque[PendingItem] = collections.deque()
        self._arrived = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def submit(self, payload: Any, owner: str, received_at: float, codec: str = "json") -> PendingItem:
        item = PendingItem(payload, owner, received_at, asyncio.get_running_loop().create_future(), codec)
        self._items.append(item)
        self._arrived.set()
        return item

    def discard(self, item: PendingItem) -> None:
        """Forget a request that will not be computed (timed out): its payload is freed now."""
        # The queue is bounded by max_queue: a short scan. Not found: already taken into a batch.
        with contextlib.suppress(ValueError):
            self._items.remove(item)
        if not item.future.done():
            item.future.cancel()

    async def next_batch(self) -> list[PendingItem]:
        """Wait for the first request, then gather more until full or the delay has passed."""
        while not self._items:
            self._arrived.clear()
            await self._arrived.wait()
        batch = [self._items.popleft()]
        deadline = time.monotonic() + self.max_delay_s
        while len(batch) < self.max_batch_size:
            if self._items:
                batch.append(self._items.popleft())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        live = [item for item in batch if not item.future.done()]
        if live:
            self.record(len(live))
        return live

    def record(self, size: int) -> None:
        """Count a batch of `size` in the stats (also one computed without the queue)."""
        self.sizes[size] += 1

    def stats(self) -> dict[str, Any]:
        return {
            "max_batch_size": self.max_batch_size,
            "max_queue_delay_ms": self.max_delay_s * 1000,
            "queued": len(self._items),
            "batches": sum(self.sizes.values()),
            "batch_sizes": {str(size): count for size, count in sorted(self.sizes.items())},
        }
