"""Prometheus metrics of the main backend (one registry per gateway, so tests can run several).

With several worker processes (`workers` > 1) every worker writes its values to the files of
prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, made by the supervisor) and a
scrape of any worker reads every worker's files: counters and histograms are summed, gauges say
how they combine (`multiprocess_mode`). What a worker only knows in memory (its connections to the
backends and their replicas) is copied into those files every REFRESH_INTERVAL seconds.

Per-request figures (client messages, backend requests, the latency histograms) are tallied in
plain numbers and flushed into the prometheus_client metrics by `flush`: at every scrape (through
`refresh`), every REFRESH_INTERVAL in multiprocess mode, and when the gateway stops. Updating
prometheus_client's values directly takes a lock per value, nine per relayed request: ~5 us, 4 %
of the relay's CPU (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import math
import os
from bisect import bisect_left
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
REFRESH_INTERVAL = 1.0  # seconds: how stale another worker's gauges may be in a scrape

# Buckets from 0.5 ms (loopback hop) to 30 s (the default request_timeout).
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class CounterTally:
    """One counter child's increments since the last flush, as a plain number."""

    __slots__ = ("_child", "count")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self.count = 0

    def flush(self) -> None:
        if self.count:
            self._child.inc(self.count)
            self.count = 0


class HistogramTally:
    """One histogram child's observations since the last flush, as plain numbers (see the module
    doc). `flush` adds them to the child's bucket and sum values: prometheus_client 0.26's
    `Histogram` stores a count per bucket (not cumulative) and a sum, as its `observe` does;
    tests/main_backend/test_metrics_tally.py checks that both give the same exposition."""

    __slots__ = ("_child", "_bounds", "_counts", "_sum")

    def __init__(self, child: Histogram, buckets: tuple[float, ...]) -> None:
        self._child = child
        self._bounds = (*buckets, math.inf)  # prometheus_client adds +Inf to the buckets given
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        if amount == amount:  # a NaN lands in no bucket (prometheus_client's rule)
            self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def flush(self) -> None:
        counts, total = self._counts, self._sum
        if not (total or any(counts)):
            return
        self._counts, self._sum = [0] * len(counts), 0.0
        self._child._sum.inc(total)
        buckets = self._child._buckets
        for index, count in enumerate(counts):
            if count:
                buckets[index].inc(count)


class MainBackendMetrics:
    def __init__(self, worker: int | None = None) -> None:
        # Multiprocess mode only for a worker of several, and only when the supervisor made the
        # directory (prometheus_client picked its file-backed values at import from the same variable).
        self.multiprocess_dir = os.environ.get(MULTIPROC_DIR_ENV) if worker is not None else None
        self.worker = worker
        # Tallies since the last flush: per backend (requests, latency, queue, compute, batch size),
        # and client messages per type; `_all_tallies` holds every one of them, for `flush`.
        self._tallies: dict[str, tuple] = {}
        self._message_tallies: dict[str, CounterTally] = {}
        self._all_tallies: list[CounterTally | HistogramTally] = []
        self.registry = CollectorRegistry()
        self.client_messages = Counter(
            "vigil_client_messages", "Messages received from clients, by type", ["type"], registry=self.registry
        )
        self.requests = Counter(
            "vigil_backend_requests", "Requests sent to model backends", ["backend"], registry=self.registry
        )
        self.errors = Counter(
            "vigil_backend_errors", "Error replies per backend, by code", ["backend", "code"], registry=self.registry
        )
        # multiprocess_mode: across workers, requests in flight add up; a backend is up (ready) only
        # when every live worker's connection to it is. Ignored with one process.
        self.in_flight = Gauge(
            "vigil_backend_in_flight",
            "Requests awaiting a backend reply",
            ["backend"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.latency = Histogram(
            "vigil_backend_latency_seconds",
            "Round trip main backend -> model backend",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_time = Histogram(
            "vigil_backend_queue_seconds",
            "Time a request waited for a worker inside the backend (backend-reported)",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.compute_time = Histogram(
            "vigil_backend_compute_seconds",
            "Model compute time inside the backend (backend-reported)",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "vigil_backend_batch_size",
            "Requests per model call inside the backend (backend-reported, dynamic batching)",
            ["backend"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.backend_up = Gauge(
            "vigil_backend_up",
            "1 when the backend connection is up",
            ["backend"],
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.backend_ready = Gauge(
            "vigil_backend_ready",
            "1 when the backend reports its model healthy",
            ["backend"],
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.replicas = ReplicaMirror(worker) if self.multiprocess_dir else None

    def count_client_message(self, message_type: str) -> None:
        """One client message of a known type (the codec refuses unknown ones before this)."""
        tally = self._message_tallies.get(message_type)
        if tally is None:
            tally = self._message_tallies[message_type] = CounterTally(self.client_messages.labels(message_type))
            self._all_tallies.append(tally)
        tally.count += 1

    def observe_reply(self, backend: str, reply) -> None:
        tallies = self._tallies.get(backend)
        if tallies is None:
            tallies = self._tallies[backend] = (
                CounterTally(self.requests.labels(backend)),
                HistogramTally(self.latency.labels(backend), _LATENCY_BUCKETS),
                HistogramTally(self.queue_time.labels(backend), _LATENCY_BUCKETS),
                HistogramTally(self.compute_time.labels(backend), _LATENCY_BUCKETS),
                HistogramTally(self.batch_size.labels(backend), _BATCH_BUCKETS),
            )
            self._all_tallies.extend(tallies)
        requests, latency, queue_time, compute_time, batch_size = tallies
        requests.count += 1
        latency.observe(reply.latency_s)
        if not reply.ok:  # rare: counted at once
            self.errors.labels(backend, reply.code or "internal").inc()
        timing = reply.timing
        if isinstance(timing, dict):
            queue_ms, compute_ms = timing.get("queue_ms"), timing.get("compute_ms")
            if isinstance(queue_ms, (int, float)):
                queue_time.observe(queue_ms / 1000)
            if isinstance(compute_ms, (int, float)):
                compute_time.observe(compute_ms / 1000)
            size = timing.get("batch_size")
            if isinstance(size, int) and size >= 1:
                batch_size.observe(size)

    def flush(self) -> None:
        """Move the tallies into the prometheus_client metrics (see the module doc)."""
        for tally in self._all_tallies:
            tally.flush()

    def refresh(self, pools: Mapping[str, Any]) -> None:
        """The tallies flushed and the gauges read from this process's backend pools (at scrape
        time, and every REFRESH_INTERVAL in multiprocess mode so that other workers' scrapes see
        them)."""
        self.flush()
        for name, pool in pools.items():
            self.backend_up.labels(name).set(1 if pool.connected else 0)
            self.backend_ready.labels(name).set(1 if pool.ready else 0)
            self.in_flight.labels(name).set(pool.in_flight)
        if self.replicas is not None:
            self.replicas.update(pools)

    async def refresh_forever(self, pools: Mapping[str, Any], interval: float = REFRESH_INTERVAL) -> None:
        while True:
            self.refresh(pools)
            await asyncio.sleep(interval)

    def render(self) -> tuple[str, bytes]:
        if self.multiprocess_dir is None:
            return CONTENT_TYPE_LATEST, generate_latest(self.registry)
        registry = CollectorRegistry()  # every worker's files, this one's included
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        try:
            return CONTENT_TYPE_LATEST, generate_latest(registry)
        except FileNotFoundError:  # a dead worker's file folded away between listing and reading
            return CONTENT_TYPE_LATEST, generate_latest(registry)


class ReplicaMirror:
    """Multiprocess mode: the figures `replicas.ReplicaCollector` reads from one process's pools at
    scrape time, written to the shared files instead, so a scrape of any worker sees them all.

    - `vigil_backend_replicas{backend,state,worker}`: per worker (each worker has its own connections,
      and they may disagree for a moment about which replica is healthy);
    - `vigil_replica_in_flight{backend,replica}`: summed over the workers;
    - `vigil_replica_requests_total` / `vigil_replica_errors_total`: summed over the workers, and kept
      when a worker restarts (counters; with one process they count since the replica joined).
    """

    def __init__(self, worker: int | None) -> None:
        self.worker = str(worker)
        # Not registered anywhere: the values live in the multiprocess files, read by MultiProcessCollector.
        self.counts = Gauge(
            "vigil_backend_replicas",
            "Replicas of a backend, by state, as each gateway worker sees them",
            ["backend", "state", "worker"],
            registry=None,
            multiprocess_mode="livesum",
        )
        self.in_flight = Gauge(
            "vigil_replica_in_flight",
            "Requests awaiting a reply, per replica",
            ["backend", "replica"],
            registry=None,
            multiprocess_mode="livesum",
        )
        self.requests = Counter(
            "vigil_replica_requests", "Requests sent to a replica", ["backend", "replica"], registry=None
        )
        self.errors = Counter(
            "vigil_replica_errors", "Error replies of a replica, by code", ["backend", "replica", "code"], registry=None
        )
        self._counted: dict[tuple[str, ...], int] = {}  # what the counters already hold, per label set
        self._in_flight_labels: set[tuple[str, str]] = set()

    def update(self, pools: Mapping[str, Any]) -> None:
        seen: set[tuple[str, str]] = set()
        for name, pool in pools.items():
            report = pool.replica_report()
            for state in ("healthy", "connected", "total"):
                self.counts.labels(name, state, self.worker).set(report[state])
            for replica_id, replica in report["replicas"].items():
                seen.add((name, replica_id))
                self.in_flight.labels(name, replica_id).set(replica["in_flight"])
                self._advance(self.requests, (name, replica_id), replica["requests"])
                for code, count in replica["errors_by_code"].items():
                    self._advance(self.errors, (name, replica_id, code), count)
        gone = self._in_flight_labels - seen
        for labels in gone:  # a replica that left has nothing in flight here
            self.in_flight.labels(*labels).set(0)
        # If it comes back, its pool counts start again from 0.
        self._counted = {labels: n for labels, n in self._counted.items() if labels[:2] not in gone}
        self._in_flight_labels = seen

    def _advance(self, counter: Counter, labels: tuple[str, ...], total: int) -> None:
        """Add what the pool counted since the last update."""
        before = self._counted.get(labels, 0)
        delta = total - before if total >= before else total  # a count that went back: started again
        if delta:
            counter.labels(*labels).inc(delta)
        self._counted[labels] = total
