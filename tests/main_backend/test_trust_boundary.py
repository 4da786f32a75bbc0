"""Each attack class of the trust-boundary issue, in-process over real sockets.

The container versions of the memory attacks (real images, compose limits) are in
tests/docker/test_docker_attacks.py.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from shared_protocol import BaseModelBackend
from shared_protocol.server import ServerLimits
from support.net import http_get, rpc, serving, wait_ready
from vigil_eeg.backend import EEGBackend
from vigil_eeg.settings import EEGSettings
from vigil_main_backend.config import Config
from vigil_main_backend.gateway import MainBackend


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=120))


class SlowEcho(BaseModelBackend):
    model_name = "slow-echo"

    def initialize_model(self) -> None:
        pass

    def process_inference(self, data):
        time.sleep(float(data.get("ms", 0)) / 1000)
        return {"keys": sorted(data), "session_id": data.get("session_id")}


def gateway_config(backends: dict[str, int], **main) -> Config:
    return Config.model_validate(
        {
            "main_backend": {"host": "127.0.0.1", "port": 0, "health_interval": 0.5, **main},
            "model_backends": {
                name: {"host": "127.0.0.1", "port": port, "reconnect_interval": 0.2, "request_timeout": 10}
                for name, port in backends.items()
            },
        }
    )


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def ready(gateway: MainBackend, name: str) -> None:
    deadline = time.monotonic() + 10
    while not gateway.clients[name].ready:
        assert time.monotonic() < deadline, "backend never became ready"
        await asyncio.sleep(0.01)


# ---- codec attacks ------------------------------------------------------------------------------


def test_long_integer_and_lone_surrogate_get_one_error_and_spare_other_clients():
    """A 5,000-digit integer (Python refuses to convert it) used to close the connection with 1011;
    a lone surrogate in an echoed field used to break the reply inside websockets and drop the
    gateway's shared backend connection. Now: one bad_request each, and a second client on the same
    backend connection is served throughout."""

    async def scenario():
        backend = SlowEcho("127.0.0.1", 0)
        async with serving(backend) as backend_url:
            gateway = MainBackend(gateway_config({"echo": port_of(backend_url)}), api_tokens=())
            async with serving(gateway) as url, connect(url) as attacker, connect(url) as bystander:
                await ready(gateway, "echo")
                reconnects_before = gateway.clients["echo"].status.reconnects
                envelope = '{{"type":"inference_request","request_id":"{rid}","model":"echo","data":{data}}}'
                hostile = [
                    ("long", envelope.format(rid="long", data='{"x":' + "9" * 5000 + "}")),
                    ("sur", envelope.format(rid="sur", data='{"session_id":"\\ud800"}')),
                    ("sur2", '{"type":"analyze","request_id":"sur2","data":{"x":1,"session_id":"a\\udfffb"}}'),
                    ("nan", envelope.format(rid="nan", data='{"x":NaN}')),
                    ("big", envelope.format(rid="big", data='{"x":' + "1" * 25 + "}")),
                    ("deep", envelope.format(rid="deep", data='{"x":' + "[" * 40 + "]" * 40 + "}")),
                ]
                for rid, frame in hostile:
                    reply = await rpc(attacker, frame)
                    assert reply["type"] == "error" and reply["code"] == "bad_request", reply
                    assert reply["request_id"] == rid, reply
                    # The bystander on the same gateway->backend connection is unaffected.
                    ok = await rpc(
                        bystander,
                        {"type": "inference_request", "request_id": "b", "model": "echo", "data": {"session_id": "s"}},
                    )
                    assert ok["type"] == "inference_response" and ok["data"]["session_id"] == "s", ok
                assert gateway.clients["echo"].status.reconnects == reconnects_before
                # The same attacks straight at the backend: same answers, connection kept.
                async with connect(backend_url) as direct:
                    for _rid, frame in hostile:
                        frame = frame.replace(',"model":"echo"', "").replace(
                            '"type":"analyze"', '"type":"inference_request"'
                        )
                        reply = await rpc(direct, frame)
                        assert reply["code"] == "bad_request", reply

    run(scenario())


def test_session_id_of_any_type_is_relayed_once_and_routes_as_the_default_session():
    """The gateway reads only `session_id` out of `data` to route a request (a one-field decoder,
    the rest skipped). Whatever the client puts there (a number, a list, an object, null, an empty
    or a deeply nested value, in JSON or MessagePack) the request is relayed untouched, the backend
    judges it, and each request gets exactly one reply with its own id; the routing table only ever
    holds string keys; a bystander on the same backend connection is served throughout."""
    import msgspec

    from shared_protocol import messages

    values = [5, 1.5, True, ["a"], {"id": "x"}, None, "", [[["deep"]]], "s" * 200]

    async def scenario():
        backend = SlowEcho("127.0.0.1", 0)
        async with serving(backend) as backend_url:
            gateway = MainBackend(gateway_config({"echo": port_of(backend_url)}), api_tokens=())
            async with (
                serving(gateway) as url,
                connect(url) as client,
                connect(url, subprotocols=[messages.BINARY_SUBPROTOCOL]) as binary,
                connect(url) as bystander,
            ):
                await ready(gateway, "echo")
                for i, value in enumerate(values):
                    request = {"type": "inference_request", "request_id": f"j{i}", "model": "echo"}
                    reply = await rpc(client, {**request, "data": {"session_id": value, "n": i}})
                    assert reply["request_id"] == f"j{i}" and reply["type"] == "inference_response", reply
                    assert reply["data"]["session_id"] == value  # relayed as it came
                    await binary.send(
                        msgspec.msgpack.encode({**request, "request_id": f"m{i}", "data": {"session_id": value}})
                    )
                    packed = msgspec.msgpack.decode(await asyncio.wait_for(binary.recv(), 10))
                    assert packed["request_id"] == f"m{i}" and packed["data"]["session_id"] == value, packed
                    ok = await rpc(bystander, {**request, "request_id": "b", "data": {"session_id": "mine"}})
                    assert ok["type"] == "inference_response" and ok["data"]["session_id"] == "mine", ok
                # Nesting beyond the backend's limit: relayed, refused there, one reply.
                deep = '{"type":"inference_request","request_id":"deep","model":"echo","data":{"session_id":%s}}'
                reply = await rpc(client, deep % ("[" * 40 + "]" * 40))
                assert reply["request_id"] == "deep" and reply["code"] == "bad_request", reply
                routes = gateway.clients["echo"]._sessions._routes
                assert routes and all(isinstance(key, str) for key in routes), routes
                assert not any(key.endswith("/") for key in routes), routes  # "" is the default session
                assert gateway.clients["echo"].status.reconnects == 0

    run(scenario())


def test_unencodable_result_is_an_internal_error_not_a_dropped_connection():
    class Surrogate(SlowEcho):
        def process_inference(self, data):
            return {"text": "\ud800"} if data.get("bad") else {"ok": True}

    async def scenario():
        backend = Surrogate("127.0.0.1", 0)
        async with serving(backend) as url, connect(url) as ws:
            await wait_ready(backend)
            reply = await rpc(ws, {"type": "inference_request", "request_id": "u", "data": {"bad": True}})
            assert reply["type"] == "error" and reply["code"] == "internal" and reply["request_id"] == "u"
            assert "cannot be encoded" in reply["error"]
            reply = await rpc(ws, {"type": "inference_request", "request_id": "v", "data": {}})
            assert reply["data"] == {"ok": True}

    run(scenario())


# ---- byte budgets -------------------------------------------------------------------------------


def test_number_heavy_frames_are_refused_by_bytes_not_held():
    """Six frames of ~2 MB of JSON numbers pipelined on one connection: the gateway admits what its
    byte budget allows and answers the rest `overloaded` at once; every request gets one reply."""

    async def scenario():
        backend = SlowEcho("127.0.0.1", 0, max_message_size=64 * 2**20)
        async with serving(backend) as backend_url:
            config = gateway_config(
                {"echo": port_of(backend_url)},
                max_message_size=4 * 2**20,
                max_pending_bytes=16 * 2**20,
                max_pending_bytes_per_connection=12 * 2**20,
            )
            gateway = MainBackend(config, api_tokens=())
            async with serving(gateway) as url, connect(url, max_size=None) as ws:
                await ready(gateway, "echo")
                numbers = ",".join(["1.5"] * 500_000)  # ~2 MB of text, 500k floats once decoded
                for i in range(6):
                    data = '{"ms":300,"x":[' + numbers + "]}"
                    await ws.send(f'{{"type":"inference_request","request_id":"n{i}","model":"echo","data":{data}}}')
                replies = [json.loads(await asyncio.wait_for(ws.recv(), 30)) for _ in range(6)]
                by_id = {reply["request_id"]: reply for reply in replies}
                assert set(by_id) == {f"n{i}" for i in range(6)}
                codes = [by_id[f"n{i}"].get("code", "ok") for i in range(6)]
                assert codes[0] == "ok" and "overloaded" in codes, codes
                assert all(code in ("ok", "overloaded") for code in codes), codes
                refused = next(r for r in replies if r.get("code") == "overloaded")
                assert "bytes" in refused["error"]
                assert gateway._server.pending_bytes == 0 and gateway._server.in_flight == 0
                # Budget released: the connection works normally again.
                reply = await rpc(ws, {"type": "inference_request", "request_id": "after", "model": "echo", "data": {}})
                assert reply["type"] == "inference_response"

    run(scenario())


def test_backend_byte_budget_and_in_flight_cap_per_connection():
    async def scenario():
        limits = ServerLimits(max_in_flight_per_connection=2, max_pending_bytes_per_connection=10_000_000)
        backend = SlowEcho("127.0.0.1", 0, server_limits=limits, max_queue=100)
        async with serving(backend) as url, connect(url) as ws, connect(url) as other:
            await wait_ready(backend)
            for i in range(4):
                await ws.send(json.dumps({"type": "inference_request", "request_id": f"q{i}", "data": {"ms": 200}}))
            replies = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(4)]
            codes = {r["request_id"]: r.get("code", "ok") for r in replies}
            assert codes == {"q0": "ok", "q1": "ok", "q2": "overloaded", "q3": "overloaded"}, codes
            # Another connection has its own budget.
            reply = await rpc(other, {"type": "inference_request", "request_id": "o", "data": {}})
            assert reply["type"] == "inference_response"
            # A request that could never fit the budget is the client's problem, not a retry.
            big = json.dumps({"type": "inference_request", "request_id": "big", "data": {"x": [0.5] * 400_000}})
            reply = await rpc(ws, big)
            assert reply["code"] == "bad_request" and "would weigh" in reply["error"], reply
            # One that fits but not beside what is already in flight: overloaded, retry later.
            for i in range(2):
                await ws.send(json.dumps({"type": "inference_request", "request_id": f"s{i}", "data": {"ms": 300}}))
            fits = json.dumps({"type": "inference_request", "request_id": "fits", "data": {"x": [0.5] * 200_000}})
            await ws.send(fits)
            replies = {
                r["request_id"]: r for r in [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(3)]
            }
            assert replies["fits"]["code"] == "overloaded", replies["fits"]

    run(scenario())


def test_timed_out_requests_leave_the_queue_at_once():
    """A request that timed out while queued releases its payload immediately (it used to stay in
    the batch queue holding its image until a worker came by)."""

    async def scenario():
        backend = SlowEcho("127.0.0.1", 0, request_timeout=0.3, max_queue=10)
        async with serving(backend) as url, connect(url) as ws:
            await wait_ready(backend)
            await ws.send(json.dumps({"type": "inference_request", "request_id": "busy", "data": {"ms": 1500}}))
            await asyncio.sleep(0.05)
            for i in range(3):
                await ws.send(
                    json.dumps({"type": "inference_request", "request_id": f"w{i}", "data": {"pad": "x" * 10**5}})
                )
            replies = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(4)]
            assert {r["code"] for r in replies} == {"timeout"}
            assert len(backend._collector) == 0  # purged, not waiting for the busy worker
            assert backend._server.pending_bytes == 0

    run(scenario())


# ---- connections and auth -----------------------------------------------------------------------


def test_connection_cap_refuses_with_503_at_the_handshake():
    async def scenario():
        backend = SlowEcho("127.0.0.1", 0)
        async with serving(backend) as backend_url:
            gateway = MainBackend(gateway_config({"echo": port_of(backend_url)}, max_connections=3), api_tokens=())
            async with serving(gateway) as url:
                held = [await connect(url) for _ in range(3)]
                with pytest.raises(InvalidStatus) as info:
                    await connect(url)
                assert info.value.response.status_code == 503
                await held[0].close()
                await asyncio.sleep(0.1)
                async with connect(url) as ws:  # a freed slot is usable again
                    assert (await rpc(ws, {"type": "health_check"}))["type"] == "pong"
                for conn in held[1:]:
                    await conn.close()

    run(scenario())


def test_auth_on_and_off():
    async def scenario():
        backend = SlowEcho("127.0.0.1", 0)
        async with serving(backend) as backend_url:
            config = gateway_config({"echo": port_of(backend_url)})
            gateway = MainBackend(config, api_tokens=("s3cret-a", "s3cret-b"))
            async with serving(gateway) as url:
                http = url.replace("ws://", "http://")
                for bad in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic czNjcmV0LWE="}):
                    with pytest.raises(InvalidStatus) as info:
                        await connect(url, additional_headers=bad)
                    assert info.value.response.status_code == 401
                with pytest.raises(InvalidStatus):
                    await connect(url + "/?token=wrong")
                async with connect(url, additional_headers={"Authorization": "Bearer s3cret-b"}) as ws:
                    await ready(gateway, "echo")
                    pong = await rpc(ws, {"type": "health_check"})
                    assert "url" in pong["backends"]["echo"]  # details for a token holder
                    reply = await rpc(ws, {"type": "inference_request", "request_id": "t", "model": "echo", "data": {}})
                    assert reply["type"] == "inference_response"
                async with connect(url + "/?token=s3cret-a") as ws:  # the browser form
                    assert (await rpc(ws, {"type": "health_check"}))["type"] == "pong"
                assert (await asyncio.to_thread(http_get, http + "/metrics"))[0] == 401
                assert (await asyncio.to_thread(http_get, http + "/status"))[0] == 401
                code, body = await asyncio.to_thread(http_get, http + "/readyz")
                assert code == 200 and "url" not in body and "127.0.0.1" not in body
            # Auth off: anyone connects; the public pong still carries no addresses or errors.
            gateway = MainBackend(config, api_tokens=())
            async with serving(gateway) as url, connect(url) as ws:
                await ready(gateway, "echo")
                pong = await rpc(ws, {"type": "health_check"})
                assert pong["backends"]["echo"] == {"status": "healthy", "replicas": {"healthy": 1, "total": 1}}

    run(scenario())


def test_backend_requires_the_token_when_set_and_gateway_presents_it(monkeypatch):
    monkeypatch.setenv("VIGIL_BACKEND_TOKEN", "internal-1")

    async def scenario():
        backend = SlowEcho("127.0.0.1", 0, api_tokens=("internal-1",))
        async with serving(backend) as backend_url:
            with pytest.raises(InvalidStatus):
                await connect(backend_url)  # a stranger on the internal network
            gateway = MainBackend(gateway_config({"echo": port_of(backend_url)}), api_tokens=())
            async with serving(gateway) as url, connect(url) as ws:
                await ready(gateway, "echo")
                reply = await rpc(ws, {"type": "inference_request", "request_id": "i", "model": "echo", "data": {}})
                assert reply["type"] == "inference_response"

    run(scenario())


# ---- sessions belong to their client ------------------------------------------------------------


def eeg_chunk(session_id: str, t: float, **extra) -> dict:
    import numpy as np

    rng = np.random.default_rng(int(t * 10))
    data = (rng.standard_normal((4, 128)) * 10).round(3).tolist()
    return {
        "session_id": session_id,
        "timestamp": t,
        "eeg": {"sfreq": 128, "ch_names": ["Fz", "Cz", "Pz", "Oz"], "unit": "uV", "data": data},
        **extra,
    }


def test_second_client_cannot_evict_reset_or_write_another_clients_session():
    async def scenario():
        settings = EEGSettings(max_sessions_per_owner=3)
        backend = EEGBackend("127.0.0.1", 0, settings=settings)
        async with serving(backend) as backend_url:
            await wait_ready(backend, 60)
            gateway = MainBackend(gateway_config({"eeg": port_of(backend_url)}), api_tokens=())
            async with serving(gateway) as url, connect(url) as alice, connect(url) as mallory:
                await ready(gateway, "eeg")

                async def send(ws, rid, data):
                    reply = await rpc(
                        ws, {"type": "inference_request", "request_id": rid, "model": "eeg", "data": data}
                    )
                    assert reply["type"] == "inference_response", reply
                    return reply["data"]

                first = await send(alice, "a1", eeg_chunk("shared-name", 0.0))
                assert first["samples_received"] == 128
                # Mallory uses the same session id: her own session, not Alice's.
                other = await send(mallory, "m1", eeg_chunk("shared-name", 50.0))
                assert other["samples_received"] == 128
                # Reset by name: only Mallory's own session.
                await send(mallory, "m2", eeg_chunk("shared-name", 60.0, reset_session=True))
                # Flood: Mallory's sessions beyond her quota evict only her own.
                for i in range(10):
                    await send(mallory, f"f{i}", eeg_chunk(f"flood-{i}", 0.0))
                second = await send(alice, "a2", eeg_chunk("shared-name", 1.0))
                assert second["samples_received"] == 256, second  # continued, never reset or evicted
                assert "reset" not in " ".join(second.get("warnings", []))

    run(scenario())


def test_gateway_sends_the_session_owner_and_the_backend_honours_it():
    async def scenario():
        backend = SlowEcho("127.0.0.1", 0)
        seen: list[str] = []
        original = backend.process_inference

        def spy(data):
            seen.append(data.owner)
            return original(data)

        backend.process_inference = spy
        async with serving(backend) as backend_url:
            gateway = MainBackend(gateway_config({"echo": port_of(backend_url)}), api_tokens=())
            async with serving(gateway) as url, connect(url) as a, connect(url) as b:
                await ready(gateway, "echo")
                for ws in (a, b, a):
                    await rpc(ws, {"type": "inference_request", "request_id": "x", "model": "echo", "data": {}})
                # b claims a's owner name: the gateway sends its own name for b, not b's claim.
                forged = {"type": "inference_request", "request_id": "y", "model": "echo", "data": {}}
                await rpc(b, {**forged, "session_owner": seen[0].removeprefix("via-")})
        assert seen[0] == seen[2] != seen[1]
        assert seen[3] == seen[1]
        assert all(owner.startswith("via-conn-") for owner in seen)

    run(scenario())
