"""ReplicaPool: one model backend served by N replicas, used by the gateway like one BackendClient.

- Discovery: an explicit `endpoints` list, or every address of `host` (see discovery.py),
  re-resolved every `resolve_interval` seconds. One BackendClient per replica, each with its own
  reconnect/backoff and health checks; a replica that vanishes from DNS is dropped (its client
  closed, its in-flight requests answered `unavailable` by the client).
- Routing: a request with a `session_key` goes to the rendezvous owner of that key among the
  healthy replicas, so a session's frames always meet its state. Sessionless requests go to the
  replica with the fewest requests in flight; an `overloaded` refusal is retried on the next one
  (only `overloaded`: a request that crashed one replica must not be sent on to crash the next).
- Session moves are never silent: the pool remembers which replica (and which connection to it)
  served each session last. When that changes — the replica left, stopped answering, a new one
  took the session over, or the replica reconnected and may have restarted — the request is sent
  with `reset_session: true` (the new owner starts the session fresh, even if it holds stale
  state from an earlier visit) and the reply's data says `session_reset: true` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from shared_protocol import BackendClient, ErrorCode, Reply, messages
from shared_protocol.client import CLOSED, CONNECTED, CONNECTING, DOWN, RECONNECTING, BackendStatus, resolver

from . import rendezvous
from .discovery import Endpoint, is_ip_address, parse_endpoint, resolve

logger = logging.getLogger(__name__)

DEFAULT_RESOLVE_INTERVAL = 5.0
DEFAULT_SESSION_MEMORY = 100_000
MIN_RESOLVE_GAP = 1.0  # wake() asks for a re-resolve; never more often than this
INITIAL_RESOLVE_RETRY = 0.1  # seconds, doubling, while a name has not resolved yet
DEGRADED = "degraded"  # some replicas connected, some not

# Why a session moved (the text is shown to the client in `session_reset_reason`; no addresses).
REASON_LOST = "replica_lost: the replica holding this session left (stopped, crashed or scaled in)"
REASON_UNHEALTHY = "replica_unhealthy: the replica holding this session is not answering"
REASON_REBALANCED = "rebalanced: a replica joined and took this session over"
REASON_RESTARTED = "replica_restarted: the connection to this session's replica was re-established"

Resolver = Callable[[str, int], Awaitable[list[Endpoint]]]


@dataclass(slots=True)
class Replica:
    endpoint: Endpoint
    client: BackendClient
    requests: int = 0
    id: str = field(init=False)  # the endpoint's id, made once: every routed request reads it

    def __post_init__(self) -> None:
        self.id = self.endpoint.id

    @property
    def errors(self) -> Counter:
        """Error replies by code since the replica joined (its client counts them)."""
        return self.client.errors

    @property
    def healthy(self) -> bool:
        return self.client.ready

    @property
    def generation(self) -> tuple[int, float | None]:
        """Changes on every new connection to the replica (a restart loses its sessions)."""
        status = self.client.status
        return status.reconnects, status.connected_since


class SessionRoutes:
    """Bounded LRU map: session key -> (replica id, connection generation) that served it last."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._routes: OrderedDict[str, tuple[str, tuple]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._routes)

    def get(self, key: str) -> tuple[str, tuple] | None:
        return self._routes.get(key)

    def set(self, key: str, route: tuple[str, tuple]) -> None:
        self._routes[key] = route
        self._routes.move_to_end(key)
        while len(self._routes) > self.capacity:
            self._routes.popitem(last=False)

    def restore(self, key: str, expected: tuple[str, tuple], previous: tuple[str, tuple] | None) -> None:
        """Undo a move whose request was not processed, so the next request is flagged again."""
        if self._routes.get(key) != expected:
            return
        if previous is None:
            self._routes.pop(key, None)
        else:
            self._routes[key] = previous


def _with_reset(data: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The request as sent to a session's new owner: `reset_session: true` added to its data."""
    raw = kwargs.get("data_raw")
    if raw is None:
        raw = kwargs.get("data_json")
    if raw is not None:  # relayed as it came: add the member without decoding the values
        codec = kwargs.get("codec", messages.JSON)
        try:
            members = messages.decode_members(raw, codec)
        except (msgspec.DecodeError, RecursionError, TypeError):
            return data, kwargs  # not an object: the backend refuses it anyway
        members["reset_session"] = messages.raw_value(True, codec)
        kwargs = {key: value for key, value in kwargs.items() if key != "data_json"}
        return data, {**kwargs, "data_raw": messages.encode_members(members, codec)}
    if isinstance(data, dict) and data.get("reset_session") is not True:
        data = {**data, "reset_session": True}
    return data, kwargs


class ReplicaPool:
    """Drop-in for BackendClient in the gateway (name, url, start, close, wake, connected, ready,
    in_flight, status, request) plus `replica_report()`."""

    def __init__(
        self,
        name: str,
        url: str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        endpoints: list[str] | None = None,
        resolve_interval: float = DEFAULT_RESOLVE_INTERVAL,
        session_memory: int = DEFAULT_SESSION_MEMORY,
        resolver: Resolver = resolve,
        **client_options: Any,
    ) -> None:
        self.name = name
        if host is None or port is None:
            if url is None:
                raise ValueError(f"backend {name!r}: give url, or host and port")
            parsed = parse_endpoint(url, 0)
            if parsed.port == 0:
                raise ValueError(f"backend {name!r}: url {url!r} has no port")
            host = parsed.host if host is None else host
            port = parsed.port if port is None else port
        self.host, self.port = host, port
        self.explicit = [parse_endpoint(text, port) for text in endpoints] if endpoints else None
        if self.explicit:
            self.url = ",".join(endpoint.url for endpoint in self.explicit)
        else:
            self.url = url if url is not None else Endpoint(host, port).url
        self.resolve_interval = resolve_interval
        self.max_reconnect_attempts = int(client_options.get("max_reconnect_attempts", 10))
        self._client_options = client_options  # passed to every replica's BackendClient
        self._resolver = resolver
        self._replicas: dict[str, Replica] = {}
        self._sessions = SessionRoutes(session_memory)
        self._runner: asyncio.Task | None = None
        self._closing: set[asyncio.Task] = set()
        self._resolve_wake = asyncio.Event()
        self._resolve_failures = 0
        self._resolve_error: str | None = None
        self._started = False
        self._closed = False

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.explicit:
            self._apply(self.explicit)
        else:
            if is_ip_address(self.host):  # nothing to look up: connect now, like BackendClient
                self._apply([Endpoint(self.host, self.port)])
            self._runner = asyncio.create_task(self._discover(), name=f"replica-discovery-{self.name}")

    async def close(self) -> None:
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        replicas, self._replicas = list(self._replicas.values()), {}
        await asyncio.gather(*(replica.client.close() for replica in replicas), *self._closing)

    def wake(self) -> None:
        """Retry every replica now, and re-resolve soon (the service may have moved)."""
        for replica in self._replicas.values():
            replica.client.wake()
        self._resolve_wake.set()

    async def refresh(self) -> None:
        """Resolve once now and apply the result (the periodic loop does this every resolve_interval)."""
        if self.explicit:
            self._apply(self.explicit)
            return
        try:
            found = await self._resolver(self.host, self.port)
        except OSError as exc:
            self._resolve_failures += 1
            if self._resolve_error is None:
                logger.warning("backend %s: cannot resolve %s: %s", self.name, self.host, exc)
            self._resolve_error = f"resolve {self.host!r} failed: {exc}"
            return  # keep the replicas we know: a DNS hiccup must not drop live connections
        self._resolve_failures = 0
        self._resolve_error = None
        if found:
            self._apply(found)

    async def _discover(self) -> None:
        while True:
            await self.refresh()
            self._resolve_wake.clear()
            interval = self.resolve_interval
            if not self._replicas:  # nothing known yet (e.g. the service starts after us): back off from 0.1 s
                interval = min(interval, INITIAL_RESOLVE_RETRY * 2 ** min(self._resolve_failures, 16))
            gap = min(MIN_RESOLVE_GAP, interval)
            await asyncio.sleep(gap)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resolve_wake.wait(), interval - gap)

    def _apply(self, endpoints: list[Endpoint]) -> None:
        """Make the replica set equal `endpoints`: open clients for new ones, close vanished ones."""
        if self._closed:
            return
        wanted = {endpoint.id: endpoint for endpoint in endpoints}
        for replica_id in [rid for rid in self._replicas if rid not in wanted]:
            replica = self._replicas.pop(replica_id)
            logger.info("backend %s: replica %s left (%d remain)", self.name, replica_id, len(wanted))
            task = asyncio.create_task(replica.client.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        for replica_id, endpoint in wanted.items():
            if replica_id in self._replicas:
                continue
            # Named like the backend, not the address: client-facing errors carry the name only.
            client = BackendClient(self.name, endpoint.url, **self._client_options)
            self._replicas[replica_id] = Replica(endpoint, client)
            if self._started:
                client.start()
            logger.info("backend %s: replica %s joined (%d known)", self.name, replica_id, len(self._replicas))

    # ---- state -------------------------------------------------------------------------------

    @property
    def replicas(self) -> list[Replica]:
        return list(self._replicas.values())

    @property
    def connected(self) -> bool:
        return any(replica.client.connected for replica in self._replicas.values())

    @property
    def ready(self) -> bool:
        """Every known replica connected and healthy (one down makes the backend `degraded`)."""
        return bool(self._replicas) and all(replica.healthy for replica in self._replicas.values())

    @property
    def in_flight(self) -> int:
        return sum(replica.client.in_flight for replica in self._replicas.values())

    @property
    def status(self) -> BackendStatus:
        """The replicas' statuses folded into one (a single replica's is passed through as is)."""
        replicas = list(self._replicas.values())
        if len(replicas) == 1 and not self._closed:
            return dataclasses.replace(replicas[0].client.status)
        if not replicas:
            if self._closed:
                state = CLOSED
            elif self._resolve_failures >= self.max_reconnect_attempts:
                state = DOWN
            else:
                state = CONNECTING
            return BackendStatus(state=state, last_error=self._resolve_error or "no replica resolved yet")
        statuses = [replica.client.status for replica in replicas]
        up = [replica.client.status for replica in replicas if replica.client.connected]
        if self._closed:
            state = CLOSED
        elif up:
            state = CONNECTED if len(up) == len(replicas) else DEGRADED
        else:
            present = {s.state for s in statuses}
            state = next((s for s in (CONNECTING, RECONNECTING) if s in present), DOWN)
        healthy = sum(1 for replica in replicas if replica.healthy)
        if healthy == len(replicas):
            backend_status = "healthy"
        elif healthy:
            backend_status = DEGRADED
        else:
            backend_status = next((s.backend_status for s in up if s.backend_status), None)
        errors = [f"{r.id}: {r.client.status.last_error}" for r in replicas if r.client.status.last_error]
        latencies = [s.last_latency_ms for s in up if s.last_latency_ms is not None]
        pongs = [s.last_pong_at for s in statuses if s.last_pong_at is not None]
        since = [s.connected_since for s in up if s.connected_since is not None]
        return BackendStatus(
            state=state,
            backend_status=backend_status,
            model=next((s.model for s in up if s.model), None),
            last_latency_ms=max(latencies) if latencies else None,
            last_error="; ".join(errors) if errors else self._resolve_error,
            last_pong_at=max(pongs) if pongs else None,
            connected_since=min(since) if since else None,
            reconnects=sum(s.reconnects for s in statuses),
        )

    def replica_report(self) -> dict[str, Any]:
        """Counts and per-replica detail for health_check, /readyz and /metrics."""
        replicas = list(self._replicas.values())
        return {
            "healthy": sum(1 for replica in replicas if replica.healthy),
            "connected": sum(1 for replica in replicas if replica.client.connected),
            "total": len(replicas),
            "discovery": "static" if self.explicit else f"dns {Endpoint(self.host, self.port).id}",
            "resolve_error": self._resolve_error,
            "sessions_tracked": len(self._sessions),
            "replicas": {
                replica.id: {
                    "url": replica.endpoint.url,
                    "state": replica.client.status.state,
                    "backend_status": replica.client.status.backend_status,
                    "in_flight": replica.client.in_flight,
                    "requests": replica.requests,
                    "errors": sum(replica.errors.values()),
                    "errors_by_code": dict(replica.errors),
                    "reconnects": replica.client.status.reconnects,
                    "last_error": replica.client.status.last_error,
                }
                for replica in replicas
            },
        }

    # ---- requests ----------------------------------------------------------------------------

    def _candidates(self) -> list[Replica]:
        """Healthy replicas; else any connected one (e.g. all still loading: let them answer)."""
        healthy = [replica for replica in self._replicas.values() if replica.healthy]
        if healthy:
            return healthy
        return [replica for replica in self._replicas.values() if replica.client.connected]

    def submit(
        self, data: Any, *, on_reply: Callable[[Reply], None], session_key: str | None = None, **kwargs: Any
    ) -> None:
        """Like BackendClient.submit: `on_reply` gets exactly one Reply, maybe before this returns;
        kwargs go to the replica's client untouched."""
        candidates = self._candidates()
        if not candidates:
            self.wake()  # a request arrived: retry the connections now rather than at the next tick
            status = self.status
            reason = status.last_error or status.state
            on_reply(Reply.failure(ErrorCode.UNAVAILABLE, f"backend {self.name!r} is not connected ({reason})"))
        elif session_key is None:
            # Fewest in flight first; among equals the one that served fewest so far (spreads idle load).
            ordered = sorted(candidates, key=lambda replica: (replica.client.in_flight, replica.requests))
            self._submit_in_order(ordered, 0, data, kwargs, on_reply)
        else:
            self._submit_session(candidates, session_key, data, kwargs, on_reply)

    async def request(self, data: Any, *, session_key: str | None = None, **kwargs: Any) -> Reply:
        """`submit`, awaited: exactly one Reply, like BackendClient.request."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.submit(data, on_reply=resolver(future), session_key=session_key, **kwargs)
        return await future

    def _submit_in_order(
        self, ordered: list[Replica], index: int, data: Any, kwargs: dict[str, Any], on_reply: Callable[[Reply], None]
    ) -> None:
        replica = ordered[index]

        def answered(reply: Reply) -> None:
            if reply.code == ErrorCode.OVERLOADED.value and index + 1 < len(ordered):
                logger.debug("backend %s: replica %s overloaded, spilling", self.name, replica.id)
                self._submit_in_order(ordered, index + 1, data, kwargs, on_reply)
            else:
                on_reply(reply)

        self._submit_to(replica, data, kwargs, answered)

    def _submit_session(
        self,
        candidates: list[Replica],
        session_key: str,
        data: Any,
        kwargs: dict[str, Any],
        on_reply: Callable[[Reply], None],
    ) -> None:
        if len(candidates) == 1:  # the common deployment: no hashing needed to pick the only one
            replica = candidates[0]
        else:
            by_id = {replica.id: replica for replica in candidates}
            replica = by_id[rendezvous.owner(session_key, by_id)]
        route = (replica.id, replica.generation)
        previous = self._sessions.get(session_key)
        reason = None if previous is None or previous == route else self._move_reason(previous, replica)
        self._sessions.set(session_key, route)
        if reason is None:  # the common case: the session stays where it was
            self._submit_to(replica, data, kwargs, on_reply)
            return
        data, kwargs = _with_reset(data, kwargs)
        logger.info("backend %s: session moved to replica %s (%s)", self.name, replica.id, reason.split(":")[0])

        def answered(reply: Reply) -> None:
            if reply.ok and isinstance(reply.data, dict):
                reply.data["session_reset"] = True
                reply.data["session_reset_reason"] = reason
            else:  # not processed: the next request of the session is the one that resets it
                self._sessions.restore(session_key, route, previous)
            on_reply(reply)

        self._submit_to(replica, data, kwargs, answered)

    def _move_reason(self, previous: tuple[str, tuple], new_owner: Replica) -> str:
        previous_id, _generation = previous
        if previous_id == new_owner.id:
            return REASON_RESTARTED
        old = self._replicas.get(previous_id)
        if old is None:
            return REASON_LOST
        if not old.healthy:
            return REASON_UNHEALTHY
        return REASON_REBALANCED

    @staticmethod
    def _submit_to(replica: Replica, data: Any, kwargs: dict[str, Any], on_reply: Callable[[Reply], None]) -> None:
        replica.requests += 1
        replica.client.submit(data, on_reply=on_reply, **kwargs)


class ReplicaCollector:
    """Prometheus collector for /metrics: replica counts per backend and, per replica, requests in
    flight, requests sent and error replies by code (read from the pools at scrape time, so
    replicas that come and go need no label bookkeeping).

    Register once: `registry.register(ReplicaCollector(gateway.clients))`.
    """

    def __init__(self, pools: Mapping[str, ReplicaPool]) -> None:
        self.pools = pools

    def collect(self) -> Iterator[Metric]:
        counts = GaugeMetricFamily(
            "vigil_backend_replicas", "Replicas of a backend, by state", labels=["backend", "state"]
        )
        in_flight = GaugeMetricFamily(
            "vigil_replica_in_flight", "Requests awaiting a reply, per replica", labels=["backend", "replica"]
        )
        requests = CounterMetricFamily(
            "vigil_replica_requests", "Requests sent to a replica since it joined", labels=["backend", "replica"]
        )
        errors = CounterMetricFamily(
            "vigil_replica_errors",
            "Error replies of a replica since it joined, by code",
            labels=["backend", "replica", "code"],
        )
        for name, pool in self.pools.items():
            report = pool.replica_report()
            for state in ("healthy", "connected", "total"):
                counts.add_metric([name, state], report[state])
            for replica_id, replica in report["replicas"].items():
                in_flight.add_metric([name, replica_id], replica["in_flight"])
                requests.add_metric([name, replica_id], replica["requests"])
                for code, count in replica["errors_by_code"].items():
                    errors.add_metric([name, replica_id, code], count)
        yield from (counts, in_flight, requests, errors)
