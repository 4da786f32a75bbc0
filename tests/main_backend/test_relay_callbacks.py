"""The relay without a task per request: MainBackend.answer_later (ProtocolServer's hook),
ReplicaPool.submit and BackendClient.submit. Every request still gets exactly one reply — the
backend's, an immediate refusal, a timeout, a dropped connection, or an internal error when the
gateway's own code fails — and one client's trouble never reaches another client on the same
backend connection. Real sockets throughout."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from shared_protocol import BackendClient, ErrorCode, Reply
from shared_protocol.server import Peer, ProtocolServer
from support.controlled_backend import ControlledBackend
from support.net import connect_ws, rpc, serving, wait_ready
from vigil_main_backend.gateway import MainBackend

from .test_gateway import make_config, wait_for


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=90))


def relayed(request_id: str, data: dict, model: str = "eeg") -> dict:
    return {"type": "inference_request", "request_id": request_id, "model": model, "data": data}


def comparable(reply: dict) -> dict:
    reply = dict(reply)
    reply.pop("trace_id", None)
    reply.pop("timing", None)
    return reply


def test_relay_answers_without_a_task_and_equals_the_awaited_path(monkeypatch):
    tasks_started = 0
    original = ProtocolServer._answer

    async def counting(self, peer, msg, charge):
        nonlocal tasks_started
        if isinstance(self.handler, MainBackend):  # the backend's own server is not the subject
            tasks_started += 1
        await original(self, peer, msg, charge)

    monkeypatch.setattr(ProtocolServer, "_answer", counting)

    async def scenario():
        backend = ControlledBackend()
        async with serving(backend) as backend_url:
            await wait_ready(backend)
            gateway = MainBackend(make_config({"eeg": (int(backend_url.rsplit(":", 1)[1]), {"inputs": ["eeg"]})}))
            async with serving(gateway) as url:
                await wait_for(lambda: gateway.clients["eeg"].ready)
                async with await connect_ws(url) as ws:
                    cases = [
                        relayed("ok", {"n": 1, "session_id": "s"}),
                        relayed("refused", {"op": "bad", "message": "no face"}),
                        relayed("unknown", {}, model="nope"),
                        {"type": "inference_request", "request_id": "no-model", "data": {}},
                        relayed("not-an-object", {}) | {"data": [1, 2]},
                    ]
                    over_socket = [await rpc(ws, case) for case in cases]
                    assert tasks_started == 0  # every relay went through answer_later
                    assert (await rpc(ws, {"type": "analyze", "request_id": "a", "data": {"eeg": {}}}))["type"]
                    assert tasks_started == 1  # analyze still takes `handle`, in a task
                    # The same requests awaited through `handle` (ProtocolServer.reply_to, no
                    # socket) give the same replies.
                    driver = Peer(None, owner=gateway._server._peers.copy().pop().owner, authenticated=False)
                    for case, reply in zip(cases, over_socket, strict=True):
                        awaited = await gateway._server.reply_to(driver, json.dumps(case))
                        if isinstance(awaited, bytes):
                            awaited = json.loads(awaited)
                        assert comparable(awaited) == comparable(reply), case
                    await wait_for(lambda: gateway._server.in_flight == 0)
        assert over_socket[0]["data"]["echo"] == {"n": 1, "session_id": "s"}
        assert [r.get("code") for r in over_socket[1:]] == ["bad_request"] * 4

    run(scenario())


def test_a_bug_building_one_reply_gives_that_client_an_error_and_spares_the_others(monkeypatch):
    """The reply is built in the backend connection's data_received: an exception there must
    become this request's `internal` error, not close the connection every client shares."""
    original = MainBackend._relay_reply

    def flaky(msg, model, trace_id, reply):
        if msg.request_id == "poison":
            raise RuntimeError("bug while building the reply")
        return original(msg, model, trace_id, reply)

    monkeypatch.setattr(MainBackend, "_relay_reply", staticmethod(flaky))

    async def scenario():
        backend = ControlledBackend()
        async with serving(backend) as backend_url:
            await wait_ready(backend)
            gateway = MainBackend(make_config({"eeg": (int(backend_url.rsplit(":", 1)[1]), {})}))
            async with serving(gateway) as url:
                await wait_for(lambda: gateway.clients["eeg"].ready)
                pool = gateway.clients["eeg"]
                reconnects = pool.status.reconnects
                async with await connect_ws(url) as a, await connect_ws(url) as b:
                    await a.send(json.dumps(relayed("poison", {"who": "a"})))
                    await b.send(json.dumps(relayed("fine", {"who": "b"})))
                    ra, rb = json.loads(await a.recv()), json.loads(await b.recv())
                    assert ra["type"] == "error" and ra["code"] == "internal" and ra["request_id"] == "poison"
                    assert "bug while building the reply" in ra["error"]
                    assert rb["type"] == "inference_response" and rb["data"]["echo"] == {"who": "b"}
                    with pytest.raises(TimeoutError):  # exactly one reply
                        await asyncio.wait_for(a.recv(), 0.2)
                    assert (await rpc(a, relayed("after", {"who": "a"})))["data"]["echo"] == {"who": "a"}
                assert pool.connected and pool.status.reconnects == reconnects  # never dropped
                await wait_for(lambda: gateway._server.in_flight == 0)

    run(scenario())


# ---- BackendClient.submit ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def client_of(backend: ControlledBackend, **client_kwargs):
    """`backend` served, and a BackendClient connected to it (closed afterwards)."""
    async with serving(backend) as url:
        await wait_ready(backend)
        client = BackendClient("eeg", url, **client_kwargs)
        client.start()
        try:
            await wait_for(lambda: client.connected)
            yield client
        finally:
            await client.close()


def test_submit_calls_on_reply_exactly_once_in_every_outcome():
    async def scenario():
        backend = ControlledBackend(max_concurrency=4)
        async with client_of(backend, request_timeout=0.3, reconnect_interval=0.2) as client:
            got: dict[str, list[Reply]] = {}

            def collect(name):
                got[name] = []
                return got[name].append

            assert client.submit({"n": 1}, on_reply=collect("answered")) is not None
            assert client.submit({"op": "sleep", "ms": 700}, on_reply=collect("late")) is not None
            assert client.submit({"bad": float("nan")}, on_reply=collect("unencodable")) is None
            assert len(got["unencodable"]) == 1  # called before submit returned
            await wait_for(lambda: got["answered"] and got["late"])
            await asyncio.sleep(0.6)  # the late answer arrives after the timeout: not delivered again
            assert [r.ok for r in got["answered"]] == [True] and got["answered"][0].data["echo"] == {"n": 1}
            assert [r.code for r in got["late"]] == [ErrorCode.TIMEOUT.value]
            assert [r.code for r in got["unencodable"]] == [ErrorCode.BAD_REQUEST.value]
            assert client.in_flight == 0
            await client.close()  # closed: refused at once
            assert client.submit({"n": 2}, on_reply=collect("closed")) is None
            assert [r.code for r in got["closed"]] == [ErrorCode.UNAVAILABLE.value]

    run(scenario())


def test_a_raising_on_reply_does_not_close_the_shared_connection():
    async def scenario():
        backend = ControlledBackend()
        async with client_of(backend) as client:

            def explode(reply):
                raise RuntimeError("caller bug")

            client.submit({"n": 1}, on_reply=explode)
            reply = await client.request({"n": 2})
            assert reply.ok and reply.data["echo"] == {"n": 2}
            assert client.connected and client.status.reconnects == 0 and client.in_flight == 0

    run(scenario())


def test_a_connection_lost_mid_request_answers_unavailable_once():
    async def scenario():
        backend = ControlledBackend()
        async with client_of(backend, reconnect_interval=0.2) as client:
            got: list[Reply] = []
            client.submit({"op": "sleep", "ms": 1000}, on_reply=got.append)
            await asyncio.sleep(0.1)
            for peer in backend._server._peers:  # the connection breaks (no close handshake)
                peer.websocket.transport.abort()
            await wait_for(lambda: got)
            await asyncio.sleep(1.2)  # the model's late result has nowhere to go
            assert len(got) == 1 and got[0].code == ErrorCode.UNAVAILABLE.value, got
            assert client.in_flight == 0
            await wait_for(lambda: client.connected)  # reconnected
            assert (await client.request({"n": 4})).data["echo"] == {"n": 4}

    run(scenario())


def test_a_cancelled_request_frees_its_place_in_flight():
    async def scenario():
        backend = ControlledBackend()
        async with client_of(backend) as client:
            waiting = asyncio.create_task(client.request({"op": "sleep", "ms": 500}))
            await wait_for(lambda: client.in_flight == 1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert client.in_flight == 0
            await asyncio.sleep(0.6)  # its late answer finds nobody and harms nothing
            assert (await client.request({"n": 3})).data["echo"] == {"n": 3}

    run(scenario())


@pytest.mark.parametrize("batch_frames", [True, False])
def test_two_clients_through_batch_frames_each_get_their_own_replies(batch_frames):
    """Many requests of two clients in flight at once: the gateway's backend connection speaks
    batch frames both ways (an inline backend answers a whole batch in one turn) unless the
    backend's `batch_frames` setting is off, and every reply still reaches its own client under its
    own request id."""

    async def scenario():
        backend = ControlledBackend()
        backend.run_inline = True
        async with serving(backend) as backend_url:
            await wait_ready(backend)
            port = int(backend_url.rsplit(":", 1)[1])
            gateway = MainBackend(make_config({"eeg": (port, {"inputs": ["eeg"], "batch_frames": batch_frames})}))
            async with serving(gateway) as url:
                await wait_for(lambda: gateway.clients["eeg"].ready)
                (peer,) = backend._server._peers
                async with await connect_ws(url) as first, await connect_ws(url) as second:
                    for ws, name in ((first, "a"), (second, "b")):
                        for n in range(60):
                            await ws.send(json.dumps(relayed(f"{name}{n}", {"who": name, "n": n})))
                    replies = {}
                    for ws, name in ((first, "a"), (second, "b")):
                        replies[name] = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(60)]
                return peer.batch, replies

    batch, replies = run(scenario())
    assert batch is batch_frames  # what the backend saw the gateway negotiate
    for name, got in replies.items():
        assert sorted(r["request_id"] for r in got) == sorted(f"{name}{n}" for n in range(60))
        for reply in got:
            assert reply["type"] == "inference_response"
            assert reply["data"]["echo"] == {"who": name, "n": int(reply["request_id"][1:])}
