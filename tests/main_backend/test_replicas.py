"""ReplicaPool over real sockets: endpoint set changes, least-loaded routing with `overloaded`
spill, aggregate status, and (process-level) 300 sessions x 10 requests over three backend
processes with one killed mid-run: sessions stick, the victim's move with `session_reset`, the
others are untouched, and every request is answered exactly once."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from shared_protocol import messages
from support.controlled_backend import ControlledBackend
from support.net import BackendProcess, connect_ws, free_port, http_get, serving, wait_ready
from vigil_main_backend.config import Config
from vigil_main_backend.discovery import Endpoint
from vigil_main_backend.gateway import MainBackend
from vigil_main_backend.replicas import ReplicaCollector, ReplicaPool, _with_reset

SESSIONS = 300
REQUESTS_PER_SESSION = 10
KILL_ROUND = 5  # the victim dies while this round's requests are in flight
CONNECTIONS = 6  # clients; sessions are spread over them (each stays under its in-flight cap)

CLIENT_OPTIONS = {
    "request_timeout": 10,
    "reconnect_interval": 0.2,
    "max_reconnect_attempts": 1000,
    "health_interval": 0.3,
}


def run(coro, timeout: float = 120):
    return asyncio.run(asyncio.wait_for(coro, timeout=timeout))


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


class FakeDNS:
    """A resolver whose answer the test sets (what Docker's DNS does on scale/kill)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.error: OSError | None = None
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[Endpoint]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return [Endpoint("127.0.0.1", p) for p in self.ports]


def test_endpoint_set_changes_are_applied() -> None:
    async def scenario():
        backends = [ControlledBackend() for _ in range(3)]
        async with serving(backends[0]) as u0, serving(backends[1]) as u1, serving(backends[2]) as u2:
            ports = [port_of(u) for u in (u0, u1, u2)]
            dns = FakeDNS(ports[:2])
            pool = ReplicaPool("eeg", host="eeg", port=8769, resolve_interval=60, resolver=dns, **CLIENT_OPTIONS)
            pool.start()
            try:
                await wait_for(lambda: pool.replica_report()["healthy"] == 2, what="2 replicas healthy")
                assert pool.ready and pool.status.state == "connected" and pool.status.backend_status == "healthy"

                dns.ports = ports  # scale 2 -> 3
                await pool.refresh()
                await wait_for(lambda: pool.replica_report()["healthy"] == 3, what="3 replicas healthy")
                assert set(pool.replica_report()["replicas"]) == {f"127.0.0.1:{p}" for p in ports}

                dropped = next(r for r in pool.replicas if r.endpoint.port == ports[0])
                dns.ports = ports[1:]  # the first one vanished from DNS
                await pool.refresh()
                await wait_for(lambda: dropped.client.status.state == "closed", what="vanished replica closed")
                assert set(pool.replica_report()["replicas"]) == {f"127.0.0.1:{p}" for p in ports[1:]}

                dns.error = OSError("Name or service not known")  # a DNS hiccup keeps what we have
                await pool.refresh()
                report = pool.replica_report()
                assert report["total"] == 2 and "Name or service not known" in report["resolve_error"]
                dns.error = None
                await pool.refresh()
                assert pool.replica_report()["resolve_error"] is None
            finally:
                await pool.close()
            assert pool.status.state == "closed"

    run(scenario())


def test_aggregate_status_is_degraded_while_one_replica_is_down() -> None:
    async def scenario():
        live = ControlledBackend()
        dead_port = free_port()
        async with serving(live) as url:
            pool = ReplicaPool(
                "eeg", host="127.0.0.1", port=1, endpoints=[url, f"127.0.0.1:{dead_port}"], **CLIENT_OPTIONS
            )
            pool.start()
            try:
                await wait_for(lambda: pool.replica_report()["healthy"] == 1, what="one replica healthy")
                status = pool.status
                assert pool.connected and not pool.ready
                assert status.state == "degraded" and status.backend_status == "degraded"
                assert f"127.0.0.1:{dead_port}: connect failed" in status.last_error
                report = pool.replica_report()
                assert (report["healthy"], report["total"], report["discovery"]) == (1, 2, "static")
                # Sessions and sessionless requests all go to the live replica.
                for i in range(20):
                    reply = await pool.request({"op": "echo", "i": i}, session_key=f"s{i}")
                    assert reply.ok, reply
                    reply = await pool.request({"op": "echo"})
                    assert reply.ok, reply
                reply = await pool.request({"op": "bad"}, session_key="s0")
                assert reply.code == "bad_request"
                # /metrics: counts per backend, in flight / requests / errors per replica.
                registry = CollectorRegistry()
                registry.register(ReplicaCollector({"eeg": pool}))
                text = generate_latest(registry).decode()
                live, dead = url.removeprefix("ws://"), f"127.0.0.1:{dead_port}"
                for line in (
                    'vigil_backend_replicas{backend="eeg",state="healthy"} 1.0',
                    'vigil_backend_replicas{backend="eeg",state="total"} 2.0',
                    f'vigil_replica_requests_total{{backend="eeg",replica="{live}"}} 41.0',
                    f'vigil_replica_requests_total{{backend="eeg",replica="{dead}"}} 0.0',
                    f'vigil_replica_in_flight{{backend="eeg",replica="{live}"}} 0.0',
                    f'vigil_replica_errors_total{{backend="eeg",code="bad_request",replica="{live}"}} 1.0',
                ):
                    assert line in text, (line, text)
            finally:
                await pool.close()

    run(scenario())


def test_no_replica_connected_answers_unavailable_at_once() -> None:
    async def scenario():
        pool = ReplicaPool("eeg", f"ws://127.0.0.1:{free_port()}", **CLIENT_OPTIONS)
        pool.start()
        try:
            await wait_for(lambda: "connect failed" in (pool.status.last_error or ""), what="first connect attempt")
            started = time.monotonic()
            reply = await pool.request({"op": "echo"}, session_key="s")
            assert reply.code == "unavailable" and "eeg" in reply.error and "connect failed" in reply.error
            assert time.monotonic() - started < 1.0
            assert not pool.connected and pool.replica_report()["total"] == 1
        finally:
            await pool.close()

    run(scenario())


def test_sessionless_requests_spill_overloaded_to_another_replica() -> None:
    async def scenario():
        busy = ControlledBackend(max_concurrency=1, max_queue=1)
        free = ControlledBackend()
        async with serving(busy) as busy_url, serving(free) as free_url:
            await wait_ready(busy)
            await wait_ready(free)
            pool = ReplicaPool("eeg", host="127.0.0.1", port=1, endpoints=[busy_url, free_url], **CLIENT_OPTIONS)
            pool.start()
            try:
                await wait_for(lambda: pool.replica_report()["healthy"] == 2, what="both healthy")
                # Fill the busy backend (1 running + 1 queued) from another client, so that the
                # pool's own in-flight counts do not reveal it: only its `overloaded` reply does.
                async with await connect_ws(busy_url) as ws:
                    for i in range(2):
                        sleep = {
                            "type": "inference_request",
                            "request_id": f"z{i}",
                            "data": {"op": "sleep", "ms": 1500},
                        }
                        await ws.send(json.dumps(sleep))
                    await wait_for(lambda: busy.calls >= 1, what="busy backend working")
                    replies = [await pool.request({"op": "echo", "i": i}) for i in range(6)]
                    assert all(reply.ok for reply in replies), replies
                    report = pool.replica_report()["replicas"]
                    assert report[busy_url.removeprefix("ws://")]["errors_by_code"].get("overloaded", 0) >= 1
                    assert free.calls == 6  # every request ended up on the free replica
            finally:
                await pool.close()

    run(scenario())


def test_sessionless_requests_go_to_the_least_loaded_replica() -> None:
    async def scenario():
        a, b = ControlledBackend(max_concurrency=4), ControlledBackend(max_concurrency=4)
        async with serving(a) as url_a, serving(b) as url_b:
            pool = ReplicaPool("eeg", host="127.0.0.1", port=1, endpoints=[url_a, url_b], **CLIENT_OPTIONS)
            pool.start()
            try:
                await wait_for(lambda: pool.replica_report()["healthy"] == 2, what="both healthy")
                slow = [asyncio.create_task(pool.request({"op": "sleep", "ms": 400})) for _ in range(4)]
                await asyncio.sleep(0.1)
                in_flight = [r["in_flight"] for r in pool.replica_report()["replicas"].values()]
                assert sorted(in_flight) == [2, 2]  # four concurrent requests split evenly
                assert all(reply.ok for reply in await asyncio.gather(*slow))
            finally:
                await pool.close()

    run(scenario())


# ---- process level ----------------------------------------------------------------------------


class PipelinedClient:
    """One client connection to the gateway with many requests in flight; counts every reply."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.pending: dict[str, asyncio.Future] = {}
        self.answers: Counter = Counter()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str) -> PipelinedClient:
        return cls(await connect_ws(url, max_size=None))

    async def _read(self) -> None:
        async for frame in self.ws:
            reply = json.loads(frame)
            rid = reply.get("request_id")
            self.answers[rid] += 1
            future = self.pending.get(rid)
            if future is not None and not future.done():
                future.set_result(reply)

    async def request(self, rid: str, data: dict | None, kind: str = "inference_request") -> dict:
        self.pending[rid] = asyncio.get_running_loop().create_future()
        message = {"type": kind, "request_id": rid}
        if data is not None:
            message.update(model="eeg", data=data)
        await self.ws.send(json.dumps(message))
        return await asyncio.wait_for(self.pending[rid], 30)

    async def close(self) -> None:
        self.reader.cancel()
        await self.ws.close()


async def drive_sessions(send, kill) -> tuple[dict, dict, dict, int]:
    """SESSIONS x REQUESTS_PER_SESSION requests, one round at a time, every round pipelined.

    `send(session, round)` returns the reply dict; `kill()` is called while round KILL_ROUND is in
    flight. Returns (pids per session per round, reset rounds per session, errors, victim pid).
    """
    served: dict[str, dict[int, int]] = defaultdict(dict)  # session -> round -> pid
    resets: dict[str, list[tuple[int, str]]] = defaultdict(list)
    errors: dict[tuple[str, int], dict] = {}
    victim_pid = None
    for rnd in range(REQUESTS_PER_SESSION):
        tasks = [asyncio.create_task(send(f"s{i}", rnd)) for i in range(SESSIONS)]
        if rnd == KILL_ROUND:
            await asyncio.sleep(0.005)
            victim_pid = await kill()
        replies = await asyncio.gather(*tasks)
        for i, reply in enumerate(replies):
            session = f"s{i}"
            data = reply.get("data") if reply.get("type") == "inference_response" else None
            if data is None:
                errors[(session, rnd)] = reply
                continue
            served[session][rnd] = data["pid"]
            if data.get("session_reset"):
                resets[session].append((rnd, data["session_reset_reason"]))
                assert data["echo"]["reset_session"] is True  # the new owner was told to start fresh
    return served, resets, errors, victim_pid


def check_sessions(served, resets, errors, victim_pid, pids: set[int]) -> dict[str, int]:
    owner_before = {}
    for session in (f"s{i}" for i in range(SESSIONS)):
        rounds = served[session]
        before = {rounds[r] for r in range(KILL_ROUND) if r in rounds}
        assert len(before) == 1, (session, rounds)  # one replica per session while nothing changes
        owner_before[session] = before.pop()
    spread = Counter(owner_before.values())
    assert set(spread) == pids and min(spread.values()) >= SESSIONS // 6, spread  # all three used
    moved = [s for s in owner_before if owner_before[s] == victim_pid]
    assert moved
    for session, owner in owner_before.items():
        after = {served[session].get(r) for r in range(KILL_ROUND + 1, REQUESTS_PER_SESSION)}
        if owner == victim_pid:
            # Moved once, to one survivor, and the first answer after the move says so.
            assert len(after) == 1 and victim_pid not in after, (session, served[session])
            assert len(resets[session]) == 1, (session, resets[session])
            rnd, reason = resets[session][0]
            assert reason.startswith(("replica_unhealthy", "replica_lost")), reason
            assert rnd == min(r for r, pid in served[session].items() if pid != victim_pid)
        else:
            # Untouched: same replica every round, never reset, never an error.
            assert set(served[session].values()) == {owner}, (session, served[session])
            assert not resets[session]
            assert not [key for key in errors if key[0] == session], session
    # The only errors are the victim's requests in flight when it died.
    for (session, rnd), reply in errors.items():
        assert rnd == KILL_ROUND and owner_before[session] == victim_pid, (session, rnd, reply)
        assert reply["code"] == "unavailable", reply
    return {"moved": len(moved), "errors": len(errors)}


def test_process_level_three_replicas_one_killed_through_the_gateway() -> None:
    ports = [free_port() for _ in range(3)]
    # One gateway connection per replica carries every session: let it hold a whole round.
    backend_args = ("--max-queue", "1000", "--max-concurrency", "1", "--max-in-flight-per-connection", "1000")
    procs = [BackendProcess(port, *backend_args) for port in ports]

    async def scenario():
        config = Config.model_validate(
            {
                "main_backend": {
                    "host": "127.0.0.1",
                    "port": 0,
                    "health_interval": 0.3,
                    "max_in_flight_per_connection": 1000,
                },
                "model_backends": {
                    "eeg": {
                        "host": "127.0.0.1",
                        "port": ports[0],
                        "endpoints": [f"127.0.0.1:{port}" for port in ports],
                        "reconnect_interval": 0.2,
                        "max_reconnect_attempts": 1000,
                        "request_timeout": 20,
                        "max_in_flight": 1000,
                    }
                },
            }
        )
        gateway = MainBackend(config)
        async with serving(gateway) as url:
            pool = gateway.clients["eeg"]
            assert isinstance(pool, ReplicaPool)
            await wait_for(lambda: pool.replica_report()["healthy"] == 3, what="3 replicas healthy")
            code, body = await asyncio.to_thread(http_get, url.replace("ws://", "http://") + "/readyz")
            assert code == 200, body
            pids = {proc.proc.pid for proc in procs}
            victim = procs[1]

            clients = [await PipelinedClient.open(url) for _ in range(CONNECTIONS)]
            try:

                async def send(session: str, rnd: int) -> dict:
                    data = {"op": "echo", "session_id": session, "timestamp": float(rnd)}
                    client = clients[int(session[1:]) % CONNECTIONS]
                    return await client.request(f"{session}-{rnd}", data)

                async def kill() -> int:
                    pid = victim.proc.pid
                    await asyncio.to_thread(victim.stop)  # SIGKILL, mid-round
                    return pid

                served, resets, errors, victim_pid = await drive_sessions(send, kill)
                await asyncio.sleep(0.3)  # any duplicate reply would arrive now
                answers = sum((client.answers for client in clients), Counter())
                assert len(answers) == SESSIONS * REQUESTS_PER_SESSION
                assert set(answers.values()) == {1}, "a request was answered more than once"
                outcome = check_sessions(served, resets, errors, victim_pid, pids)
                pong = await clients[0].request("h", None, kind="health_check")
            finally:
                for client in clients:
                    await client.close()
            assert pong["status"] == "degraded", pong  # one of three replicas down: degraded, not down
            eeg = pong["backends"]["eeg"]
            assert eeg["status"] == "degraded" and eeg["replicas"] == {"healthy": 2, "total": 3}, eeg
            report = pool.replica_report()
            assert (report["healthy"], report["total"]) == (2, 3), report
            print(f"moved sessions: {outcome['moved']}/{SESSIONS}; unavailable in flight: {outcome['errors']}")

    try:
        for proc in procs:
            proc.start()
        run(scenario(), timeout=240)
    finally:
        for proc in procs:
            proc.stop()


def test_a_restarted_replica_is_flagged_even_at_the_same_address() -> None:
    port = free_port()
    proc = BackendProcess(port)
    try:
        proc.start()

        async def scenario():
            pool = ReplicaPool("eeg", f"ws://127.0.0.1:{port}", **CLIENT_OPTIONS)
            pool.start()
            try:
                await wait_for(lambda: pool.ready, what="ready")
                first = await pool.request({"op": "echo"}, session_key="cam0")
                assert first.ok and "session_reset" not in first.data
                proc.stop()
                await asyncio.to_thread(proc.start)
                await wait_for(lambda: pool.ready, timeout=15, what="reconnected")
                again = await pool.request({"op": "echo"}, session_key="cam0")
                assert again.ok and again.data["pid"] != first.data["pid"]
                assert again.data["session_reset"] is True
                assert again.data["session_reset_reason"].startswith("replica_restarted")
                later = await pool.request({"op": "echo"}, session_key="cam0")
                assert "session_reset" not in later.data
            finally:
                await pool.close()

        run(scenario())
    finally:
        proc.stop()


@pytest.mark.parametrize("codec", [messages.JSON, messages.MSGPACK])
def test_a_moved_session_is_sent_with_reset_session_in_either_codec(codec: str) -> None:
    data = {"session_id": "cam0", "timestamp": 2.5, "eeg": {"data": [[1, 2], [3, 4]]}, "reset_session": False}
    raw = messages.encode_members(data, codec)
    _, kwargs = _with_reset(None, {"data_raw": raw, "codec": codec, "owner": "client-1"})
    assert messages.decode_data(kwargs["data_raw"], codec=codec) == {**data, "reset_session": True}
    assert kwargs["codec"] == codec and kwargs["owner"] == "client-1"  # everything else passed through
    # Decoded data (the in-process form) gets the member too; a request already resetting is left alone.
    assert _with_reset({"x": 1}, {})[0] == {"x": 1, "reset_session": True}
    already = {"x": 1, "reset_session": True}
    assert _with_reset(already, {})[0] is already


def test_a_name_that_does_not_resolve_yet_is_retried_soon_then_used() -> None:
    async def scenario():
        backend = ControlledBackend()
        async with serving(backend) as url:
            dns = FakeDNS([port_of(url)])
            dns.error = OSError("Name or service not known")  # compose: the backend starts after the gateway
            pool = ReplicaPool("eeg", host="eeg", port=8769, resolve_interval=60, resolver=dns, **CLIENT_OPTIONS)
            pool.start()
            try:
                await wait_for(lambda: dns.calls >= 3, what="resolution retried")
                status = pool.status
                assert status.state == "connecting" and "Name or service not known" in status.last_error
                reply = await pool.request({"op": "echo"}, session_key="s")
                assert reply.code == "unavailable" and "Name or service not known" in reply.error
                dns.error = None
                # Retried with backoff, not after resolve_interval (60 s): wait_for gives up at 10 s.
                await wait_for(lambda: pool.ready, what="resolved and connected")
                assert (await pool.request({"op": "echo"}, session_key="s")).ok
            finally:
                await pool.close()

    run(scenario())
