"""Dynamic batching: group requests that arrive close together into one model call.

A request waits at most `max_queue_delay_ms` for company; a batch never exceeds `max_batch_size`.
Requests already waiting when a batch is formed join it without any delay, so under load batches
form by themselves even with a delay of 0. Every request keeps its own future, hence its own
reply, deadline and error.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class PendingItem:
    data: dict[str, Any]
    received_at: float
    future: asyncio.Future = field(repr=False)


class BatchCollector:
    def __init__(self, max_batch_size: int, max_queue_delay_ms: float) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if max_queue_delay_ms < 0:
            raise ValueError("max_queue_delay_ms must be >= 0")
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_queue_delay_ms / 1000
        self.sizes: collections.Counter[int] = collections.Counter()
        self._queue: asyncio.Queue[PendingItem] = asyncio.Queue()

    def submit(self, data: dict[str, Any], received_at: float) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(PendingItem(data, received_at, future))
        return future

    async def next_batch(self) -> list[PendingItem]:
        """Wait for the first request, then gather more until full or the delay has passed."""
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_delay_s
        while len(batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        # A request answered `timeout` while it waited is not computed at all.
        live = [item for item in batch if not item.future.done()]
        if live:
            self.sizes[len(live)] += 1
        return live

    def stats(self) -> dict[str, Any]:
        return {
            "max_batch_size": self.max_batch_size,
            "max_queue_delay_ms": self.max_delay_s * 1000,
            "batches": sum(self.sizes.values()),
            "batch_sizes": {str(size): count for size, count in sorted(self.sizes.items())},
        }
