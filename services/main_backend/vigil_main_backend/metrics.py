"""Prometheus metrics of the main backend (one registry per gateway, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Buckets from 0.5 ms (loopback hop) to 30 s (the default request_timeout).
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class MainBackendMetrics:
    def __init__(self) -> None:
        self._children: dict[str, tuple] = {}
        self._message_children: dict[str, Counter] = {}
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
        self.in_flight = Gauge(
            "vigil_backend_in_flight", "Requests awaiting a backend reply", ["backend"], registry=self.registry
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
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.backend_up = Gauge(
            "vigil_backend_up", "1 when the backend connection is up", ["backend"], registry=self.registry
        )
        self.backend_ready = Gauge(
            "vigil_backend_ready", "1 when the backend reports its model healthy", ["backend"], registry=self.registry
        )

    def count_client_message(self, message_type: str) -> None:
        """One client message of a known type (the codec refuses unknown ones before this)."""
        child = self._message_children.get(message_type)
        if child is None:
            child = self._message_children[message_type] = self.client_messages.labels(message_type)
        child.inc()

    def observe_reply(self, backend: str, reply) -> None:
        children = self._children.get(backend)
        if children is None:  # label lookups cost a lock and a dict walk: once per backend
            children = self._children[backend] = (
                self.requests.labels(backend),
                self.latency.labels(backend),
                self.queue_time.labels(backend),
                self.compute_time.labels(backend),
                self.batch_size.labels(backend),
            )
        requests, latency, queue_time, compute_time, batch_size = children
        requests.inc()
        latency.observe(reply.latency_s)
        if not reply.ok:
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

    def render(self) -> tuple[str, bytes]:
        return CONTENT_TYPE_LATEST, generate_latest(self.registry)
